-- smsgate outbox schema, version 4: the same index for listing by status, with a predicate that
-- is cheap to evaluate. SQLite checks a partial index's predicate for the old and the new row of
-- every UPDATE that changes the state, and for an IN list of more than two values it builds a
-- temporary index each time: with version 1's predicate that was four of them per message sent,
-- the biggest single cost of the worker's writes. Equalities joined by OR cost a few comparisons.
-- Queries still add this predicate verbatim (smsgate.outbox.sql.INDEXED_PREDICATE).

DROP INDEX smsgate_messages_state;
CREATE INDEX smsgate_messages_state ON smsgate_messages (state, id)
    WHERE state = 'scheduled' OR state = 'reconciling' OR state = 'failed'
       OR state = 'undelivered' OR state = 'rejected' OR state = 'expired'
       OR state = 'canceled' OR state = 'unknown';
