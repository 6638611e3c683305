-- The lease table's epoch row, under the mailbox name '' (no mailbox has
-- it: capture refuses an empty name). silo_mailbox_lease is UNLOGGED, so a
-- crash of the server, or the promotion of a standby after a failover,
-- empties it: every lease is gone at once, while the drainers that held
-- them may still be delivering, or holding a delivered row whose deletion
-- did not reach the old server. ClaimMailbox reads a missing epoch row as
-- "the leases were wiped just now": the first claim puts the row back,
-- dated one lease length ahead, and no mailbox is claimed before then, so
-- that every former holder has recorded what it delivered, or given its
-- mailbox up, before anyone else delivers it. Created here already lapsed:
-- a fresh database starts at once.
INSERT INTO silo_mailbox_lease (mailbox_name, owner, lease_until) VALUES ('', '', '-infinity')
ON CONFLICT (mailbox_name) DO NOTHING;
