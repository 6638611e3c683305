-- Bodies and headers compress with lz4 instead of pglz where the server
-- has it (PostgreSQL 14+, built with lz4 as the Debian, Ubuntu, RDS and
-- Cloud SQL packages are). Webhook bodies above ~2 KB are compressed on
-- insert, and with pglz that doubled the cost of a capture: 12 KB GitHub
-- pushes in batches of 16 went in at ~6,000 rows/s with pglz and ~12,000
-- with lz4 on the same server. Only new values are affected; no rewrite.
-- A server without lz4 (or older than 14) keeps pglz: the statements run
-- through EXECUTE so that their errors can be caught.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE silo_webhook_payload
        ALTER COLUMN request_body SET COMPRESSION lz4,
        ALTER COLUMN request_headers SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE silo_dead_letter
        ALTER COLUMN request_body SET COMPRESSION lz4,
        ALTER COLUMN request_headers SET COMPRESSION lz4';
EXCEPTION
    WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
        RAISE NOTICE 'caddy-silo: lz4 compression is not available here; payloads stay compressed with pglz';
END
$$;
