package main

import (
	"context"
	"database/sql"
)

// prewarmSegments is 3 GB of 16 MB WAL segments: more than a default run
// writes (the table prints how much it wrote).
const prewarmSegments = 192

// prewarmWAL has the server create the WAL segments the run will write
// into, then recycle them at a checkpoint, as a server in service does:
// a fresh cluster otherwise creates (zero-fills and fsyncs) a new 16 MB
// segment about every second of this load, and every commit waits
// 100-200 ms behind each one.
func prewarmWAL(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_wal_prewarm (n int)`); err != nil {
		return err
	}
	for range prewarmSegments {
		if _, err := db.ExecContext(ctx, `INSERT INTO bench_wal_prewarm VALUES (1)`); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `SELECT pg_switch_wal()`); err != nil {
			return err
		}
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE bench_wal_prewarm`); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, `CHECKPOINT`)
	return err
}

// benchPostgresSettings size the durable cluster the way a server taking
// 10,000 writes/s is sized: with the defaults (1 GB of WAL between
// checkpoints, 128 MB of shared buffers) a checkpoint would start every
// ~40 s of this load and land its page flushes and full-page writes in
// the measured window. min_wal_size keeps the segments prewarmWAL created
// for reuse. fsync, full_page_writes and synchronous_commit stay on.
var benchPostgresSettings = map[string]string{
	"max_wal_size":       "'8GB'",
	"min_wal_size":       "'4GB'",
	"checkpoint_timeout": "'30min'",
	"shared_buffers":     "'1GB'",
}
