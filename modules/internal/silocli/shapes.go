package silocli

import "time"

// The answers' fields the tables show, decoded as docs/admin-api.md
// ("Shapes") documents them. --json prints the answer itself, with every
// field, so these need not hold all of them.

type pause struct {
	Kind     string     `json:"kind"`
	Name     string     `json:"name"`
	PausedAt *time.Time `json:"paused_at"`
	PausedBy string     `json:"paused_by"`
	Reason   string     `json:"reason"`
}

type statusAnswer struct {
	Mode    string `json:"mode"`
	Storage struct {
		Engine string  `json:"engine"`
		Where  string  `json:"where"`
		OK     bool    `json:"ok"`
		PingMS float64 `json:"ping_ms"`
		Error  string  `json:"error"`
	} `json:"storage"`
	Regions []struct {
		Name                string     `json:"name"`
		Breaker             string     `json:"breaker"`
		ConsecutiveFailures int        `json:"consecutive_failures"`
		InFlight            int        `json:"in_flight"`
		LastError           string     `json:"last_error"`
		LastErrorAt         *time.Time `json:"last_error_at"`
		Paused              *pause     `json:"paused"`
	} `json:"regions"`
	Drainer *struct {
		Running                   bool       `json:"running"`
		Owner                     string     `json:"owner"`
		Workers                   int        `json:"workers"`
		Busy                      int        `json:"busy"`
		Queued                    int        `json:"queued"`
		LeasesHeld                int        `json:"leases_held"`
		DeliveredRetentionSeconds float64    `json:"delivered_retention_seconds"`
		PausesLoadedAt            *time.Time `json:"pauses_loaded_at"`
		PausesError               string     `json:"pauses_error"`
	} `json:"drainer"`
	Rates struct {
		WindowSeconds       float64 `json:"window_seconds"`
		CapturesPerSecond   float64 `json:"captures_per_second"`
		DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	} `json:"rates"`
	Directory struct {
		StaticOrganizations int      `json:"static_organizations"`
		StaticIntegrations  int      `json:"static_integrations"`
		CacheEntries        int      `json:"cache_entries"`
		Database            string   `json:"database"`
		MissingTables       []string `json:"missing_tables"`
		Error               string   `json:"error"`
	} `json:"directory"`
}

type mailbox struct {
	Name          string     `json:"name"`
	Region        string     `json:"region"`
	Provider      string     `json:"provider"`
	Depth         int64      `json:"depth"`
	DepthCapped   bool       `json:"depth_capped"`
	OldestAge     float64    `json:"oldest_age_seconds"`
	HeadID        int64      `json:"head_id"`
	HeadAttempts  int        `json:"head_attempts"`
	HeadStatus    int        `json:"head_last_status"`
	HeadError     string     `json:"head_last_error"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	Paused        *pause     `json:"paused"`
}

type mailboxesAnswer struct {
	Mailboxes []mailbox `json:"mailboxes"`
	Next      *string   `json:"next"`
	DepthCap  int64     `json:"depth_cap"`
	Truncated bool      `json:"truncated"`
}

// row is what every row listing has: payloads and dead letters.
type row struct {
	ID             int64      `json:"id"`
	Mailbox        string     `json:"mailbox"`
	Region         string     `json:"region"`
	Provider       string     `json:"provider"`
	Destination    string     `json:"destination"`
	Method         string     `json:"method"`
	Path           string     `json:"path"`
	DateAdded      *time.Time `json:"date_added"`
	Attempts       int        `json:"attempts"`
	LastStatus     int        `json:"last_status"`
	LastError      string     `json:"last_error"`
	BodySize       int64      `json:"body_size"`
	RegionAnswered bool       `json:"region_answered"`
	// Payloads:
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	// Dead letters:
	Reason string     `json:"reason"`
	DeadAt *time.Time `json:"dead_at"`
}

type mailboxAnswer struct {
	Mailbox mailbox `json:"mailbox"`
	Head    []row   `json:"head"`
}

type deadLettersAnswer struct {
	DeadLetters []row  `json:"dead_letters"`
	Next        *int64 `json:"next"`
}

type detailAnswer struct {
	row
	Headers map[string][]string `json:"headers"`
	Body    struct {
		Size      int64  `json:"size"`
		Encoding  string `json:"encoding"`
		Preview   string `json:"preview"`
		Truncated bool   `json:"truncated"`
		Masked    bool   `json:"masked"`
	} `json:"body"`
	DeliveryKey      string `json:"delivery_key"`
	CallbackURL      string `json:"callback_url"`
	RegionAnswerSize *int   `json:"region_answer_size"`
}

type bulkAnswer struct {
	Replayed *int64 `json:"replayed"`
	Deleted  *int64 `json:"deleted"`
	Batches  int64  `json:"batches"`
	More     bool   `json:"more"`
}
