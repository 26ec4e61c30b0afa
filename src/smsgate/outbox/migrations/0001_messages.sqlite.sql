-- smsgate outbox schema, version 1: messages and their history.
-- Times are wall-clock seconds since the epoch (REAL), the same on every engine.

CREATE TABLE smsgate_messages (
    id                  TEXT PRIMARY KEY,
    -- lifecycle: scheduled, queued, retrying, reconciling, sending, sent, delivered,
    -- undelivered, failed, rejected, expired, canceled, unknown
    state               TEXT NOT NULL,
    purpose             TEXT NOT NULL,
    to_number           TEXT NOT NULL,
    sender              TEXT,
    idempotency_key     TEXT,
    -- body, media, validity, metadata, provider_options (JSON)
    payload             TEXT NOT NULL,
    -- sends started, over all providers
    attempts            INTEGER NOT NULL DEFAULT 0,
    -- the provider the next or current try goes through, and its per-provider attempt number
    provider            TEXT,
    provider_attempt    INTEGER NOT NULL DEFAULT 1,
    route               TEXT,
    provider_message_id TEXT,
    send_at             REAL,
    expires_at          REAL,
    -- set only while the message waits for a worker (NULL when leased or final)
    next_attempt_at     REAL,
    -- set only while a worker holds the message
    lease_owner         TEXT,
    lease_expires_at    REAL,
    last_error          TEXT,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL
) WITHOUT ROWID;

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
-- No index on to_number here (PostgreSQL has one): random keys make every bulk insert rewrite
-- pages all over the index, which halves submit throughput; listing by recipient scans instead.

-- Append-only: every state change of every message, never updated or deleted. Rows are never
-- deleted, so the rowid id only grows and doubles as a change-feed cursor.
CREATE TABLE smsgate_events (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL,
    at          REAL NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    -- submit, cancel, worker:<id>, webhook:<provider>, ...
    source      TEXT NOT NULL,
    reason      TEXT,
    provider    TEXT,
    attempt     INTEGER,
    -- "<provider>:<event id>" for provider receipts, so a replayed webhook is stored once
    event_key   TEXT,
    raw         TEXT
);

CREATE INDEX smsgate_events_message ON smsgate_events (message_id, id);
CREATE UNIQUE INDEX smsgate_events_event_key
    ON smsgate_events (event_key) WHERE event_key IS NOT NULL;
