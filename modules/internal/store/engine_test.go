package store_test

import (
	"context"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// engineStore is every method both engines give (documented on Postgres): the
// conformance suite runs the same tests on each through it.
type engineStore interface {
	Engine() string
	Migrate(ctx context.Context) error
	MigrateDirectory(ctx context.Context) error
	MissingDirectoryTables(ctx context.Context) ([]string, error)
	Where() string
	Ping(ctx context.Context) error
	Close()

	InsertPayloads(ctx context.Context, payloads []store.NewPayload) ([]store.InsertResult, error)
	DueMailboxes(ctx context.Context, now time.Time, limit int, skipOnFailure []string) ([]string, error)
	ClaimMailbox(ctx context.Context, mailbox, owner string, now, leaseUntil time.Time) (bool, error)
	RenewLease(ctx context.Context, mailbox, owner string, leaseUntil time.Time) (bool, error)
	ReleaseMailbox(ctx context.Context, mailbox, owner string) error
	NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]store.Payload, error)
	DeletePayload(ctx context.Context, id int64) error
	ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error
	DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error
	RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error
	Mailboxes(ctx context.Context, now time.Time) ([]store.MailboxStats, error)
	DeadLetters(ctx context.Context, limit int, after int64) ([]store.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error)
	RetryMailbox(ctx context.Context, mailbox string, now time.Time) error
	PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error)

	directory.Source
	directory.Writer
	webhooks.SlackIdentities
}

var (
	_ engineStore = (*store.Postgres)(nil)
	_ engineStore = (*store.SQLite)(nil)
)
