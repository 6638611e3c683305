-- See postgres/0003_region_answer.sql. Version 3 as in PostgreSQL (SQLite
-- has no version 2: that one only changed PostgreSQL's compression).
ALTER TABLE silo_webhook_payload ADD COLUMN region_answer BLOB;
ALTER TABLE silo_dead_letter ADD COLUMN region_answer BLOB;
