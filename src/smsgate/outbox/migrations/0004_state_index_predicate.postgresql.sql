-- smsgate outbox schema, version 4: the index for listing by status gets the predicate SQLite's
-- version 4 gives it (equalities joined by OR, which SQLite evaluates far more cheaply than an
-- IN list), so that both engines keep one schema and queries one predicate
-- (smsgate.outbox.sql.INDEXED_PREDICATE). PostgreSQL evaluates either form cheaply.

DROP INDEX smsgate_messages_state;
CREATE INDEX smsgate_messages_state ON smsgate_messages (state, id)
    WHERE state = 'scheduled' OR state = 'reconciling' OR state = 'failed'
       OR state = 'undelivered' OR state = 'rejected' OR state = 'expired'
       OR state = 'canceled' OR state = 'unknown';
