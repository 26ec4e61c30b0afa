-- smsgate outbox schema, version 10: the worker's writes touch fewer index entries and compare
-- ids more cheaply (docs/postgresql.md, *Where the CPU goes*).
--
-- Marking a message "sending" can now be a HOT update (the new row version on the same page,
-- no index entry added): it changes no column an index covers. Listing by status used to index
-- the state column itself, so every state change wrote a new entry into every index of the
-- table; the index is now on listed_state, which holds the state only for the states people
-- look for (NULL otherwise, so queued -> sending leaves it unchanged). Queries on those states
-- name listed_state (smsgate.outbox.sql.INDEXED_PREDICATE). A HOT update needs room on the
-- row's page: a fillfactor of 70 keeps it for most rows (the table takes up to 1/0.7 of the
-- space it took; new rows only). The states are one array literal, not the equalities SQLite's
-- version 10 joins by OR: every statement that changes the state reads the expression back from
-- the catalog, and at 30 rows a statement reading the longer form cost 2% of the writes.
ALTER TABLE smsgate_messages ADD COLUMN listed_state text GENERATED ALWAYS AS (
    CASE WHEN state = ANY ('{scheduled,reconciling,failed,undelivered,'
                           'rejected,expired,canceled,unknown}'::text[]) THEN state END) STORED;
DROP INDEX smsgate_messages_state;
CREATE INDEX smsgate_messages_state ON smsgate_messages (listed_state, id)
    WHERE listed_state IS NOT NULL;
ALTER TABLE smsgate_messages SET (fillfactor = 70);
-- The columns the hot indexes are built on compare byte by byte, as SQLite compares them: a
-- database's default collation (en_US.UTF-8, even C.UTF-8) sends every comparison of an index
-- insert through strcoll. Ids and numbers are ASCII, so their order does not change.
ALTER TABLE smsgate_messages ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE smsgate_messages ALTER COLUMN to_number TYPE text COLLATE "C";
ALTER TABLE smsgate_messages ALTER COLUMN provider_message_id TYPE text COLLATE "C";
ALTER TABLE smsgate_messages ALTER COLUMN idempotency_key TYPE text COLLATE "C";
ALTER TABLE smsgate_events ALTER COLUMN message_id TYPE text COLLATE "C";
