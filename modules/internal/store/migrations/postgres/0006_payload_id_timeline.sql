-- Payload ids carry the server's WAL timeline above bit 44, so that no id
-- is handed out twice across a failover. A standby promoted after its
-- asynchronous primary died resumes the id sequence from the last value
-- it received, and hands out again the ids of rows it never got; a
-- drainer still holding such an id from before the failover (a delivered
-- row whose deletion it retries, the rest of its page) then deleted the
-- new row with that id: 3 and 5 webhooks acknowledged after the
-- promotion were lost in two runs of
-- TestPostgresFailoverAsynchronousStandbyLossWindow, and 68 of 100 rows
-- in TestPostgresNoIDReusedAfterFailover.
-- A promotion (or a point-in-time recovery) starts a new timeline, so ids
-- after it are new and larger than every id before it: per-mailbox order
-- by id holds. The base is (timeline - 1) << 44: on a server that was never
-- promoted (timeline 1) ids are the sequence's values, as before. 44 bits
-- leave 1.7e13 rows to the sequence (55 years at 10,000/s), and ids stay
-- below 2^53 (exact in JSON) for the first 512 timelines. The first 8 hex
-- digits of pg_walfile_name are the current insert timeline.
-- The same expression is in pgBatchIDs (postgres_payload.go), which draws
-- the ids of captured batches; this default gives them to replayed dead
-- letters.
ALTER TABLE silo_webhook_payload
    ALTER COLUMN id SET DEFAULT ((('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::bigint - 1) << 44)
        + nextval('silo_webhook_payload_id_seq');
