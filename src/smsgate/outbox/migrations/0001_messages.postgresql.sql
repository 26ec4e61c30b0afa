-- smsgate outbox schema, version 1: messages and their history.
-- Times are wall-clock seconds since the epoch (double precision), the same on every engine.

CREATE TABLE smsgate_messages (
    id                  text PRIMARY KEY,
    -- lifecycle: scheduled, queued, retrying, reconciling, sending, sent, delivered,
    -- undelivered, failed, rejected, expired, canceled, unknown
    state               text NOT NULL,
    purpose             text NOT NULL,
    to_number           text NOT NULL,
    sender              text,
    idempotency_key     text,
    -- body, media, validity, metadata, provider_options (JSON)
    payload             text NOT NULL,
    -- sends started, over all providers
    attempts            integer NOT NULL DEFAULT 0,
    -- the provider the next or current try goes through, and its per-provider attempt number
    provider            text,
    provider_attempt    integer NOT NULL DEFAULT 1,
    route               text,
    provider_message_id text,
    send_at             double precision,
    expires_at          double precision,
    -- set only while the message waits for a worker (NULL when leased or final)
    next_attempt_at     double precision,
    -- set only while a worker holds the message
    lease_owner         text,
    lease_expires_at    double precision,
    last_error          text,
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL
);

CREATE UNIQUE INDEX smsgate_messages_idempotency_key
    ON smsgate_messages (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX smsgate_messages_due
    ON smsgate_messages (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX smsgate_messages_leased
    ON smsgate_messages (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX smsgate_messages_provider_message_id
    ON smsgate_messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Listing by status: only the states people look for (the worker moves every message through
-- queued, sending and sent, and indexing those would cost every send). Queries add the
-- predicate verbatim so SQLite can use the partial index; common states are found by id order.
CREATE INDEX smsgate_messages_state ON smsgate_messages (state, id)
    WHERE state IN ('scheduled', 'reconciling', 'failed', 'undelivered', 'rejected', 'expired',
                    'canceled', 'unknown');
CREATE INDEX smsgate_messages_to ON smsgate_messages (to_number, id);

-- Append-only: every state change of every message, never updated or deleted.
CREATE TABLE smsgate_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  text NOT NULL,
    at          double precision NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    -- submit, cancel, worker:<id>, webhook:<provider>, ...
    source      text NOT NULL,
    reason      text,
    provider    text,
    attempt     integer,
    -- "<provider>:<event id>" for provider receipts, so a replayed webhook is stored once
    event_key   text,
    raw         text
);

CREATE INDEX smsgate_events_message ON smsgate_events (message_id, id);
CREATE UNIQUE INDEX smsgate_events_event_key
    ON smsgate_events (event_key) WHERE event_key IS NOT NULL;
