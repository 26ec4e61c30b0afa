-- smsgate outbox schema, version 10: listing by status indexes listed_state, the state only for
-- the states people look for (NULL otherwise), as PostgreSQL's version 10 does; there it lets
-- marking a message "sending" update the row in place. Queries on those states name
-- listed_state (smsgate.outbox.sql.INDEXED_PREDICATE). PostgreSQL's version 10 also gives the
-- id columns the byte-wise collation SQLite's text columns have already, and a fillfactor,
-- which SQLite does not have.
ALTER TABLE smsgate_messages ADD COLUMN listed_state TEXT GENERATED ALWAYS AS (
    CASE WHEN state = 'scheduled' OR state = 'reconciling' OR state = 'failed'
           OR state = 'undelivered' OR state = 'rejected' OR state = 'expired'
           OR state = 'canceled' OR state = 'unknown' THEN state END) VIRTUAL;
DROP INDEX smsgate_messages_state;
CREATE INDEX smsgate_messages_state ON smsgate_messages (listed_state, id)
    WHERE listed_state IS NOT NULL;
