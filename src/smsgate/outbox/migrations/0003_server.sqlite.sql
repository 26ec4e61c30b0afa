-- smsgate schema, version 3: the HTTP server's tables (API keys, opt-outs, inbound messages,
-- user webhooks and their durable delivery queue). Times are epoch seconds, as in version 1.

-- API keys: "sgk_<id>_<secret>" is shown once; only the SHA-256 of the secret is kept.
CREATE TABLE smsgate_api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    -- JSON lists; NULL means any purpose / any sender
    purposes     TEXT,
    senders      TEXT,
    -- requests per period ("100/s") and the burst it may save up; NULL: unlimited
    rate         TEXT,
    burst        INTEGER,
    -- messages per fixed window ("10000/d"); NULL: no quota
    quota        TEXT,
    created_at   REAL NOT NULL,
    revoked_at   REAL
) WITHOUT ROWID;

-- Messages counted against a key's quota, per fixed window.
CREATE TABLE smsgate_api_key_usage (
    key_id       TEXT NOT NULL,
    window_start REAL NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (key_id, window_start)
) WITHOUT ROWID;

-- Recipients who opted out: of one number of ours, or of all of them (our_number = '*').
CREATE TABLE smsgate_suppressions (
    recipient   TEXT NOT NULL,
    our_number  TEXT NOT NULL,
    -- keyword (STOP and friends), api, provider
    source      TEXT NOT NULL,
    keyword     TEXT,
    reason      TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (recipient, our_number)
) WITHOUT ROWID;

-- Messages people sent to our numbers, stored once per provider message id.
CREATE TABLE smsgate_inbound (
    id                  TEXT PRIMARY KEY,
    provider            TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    sender              TEXT NOT NULL,
    to_number           TEXT NOT NULL,
    body                TEXT NOT NULL,
    -- JSON list of media URLs
    media               TEXT NOT NULL,
    -- opt_out, opt_out_all, opt_in, help, or NULL
    action              TEXT,
    received_at         REAL NOT NULL,
    raw                 TEXT
) WITHOUT ROWID;

CREATE UNIQUE INDEX smsgate_inbound_provider_id ON smsgate_inbound (provider, provider_message_id);
CREATE INDEX smsgate_inbound_sender ON smsgate_inbound (sender, id);

-- User webhook subscriptions; the secret signs every delivery (Standard Webhooks).
CREATE TABLE smsgate_webhook_subscriptions (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- JSON list of event types; "*" matches every type
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    description TEXT,
    created_at  REAL NOT NULL
) WITHOUT ROWID;

-- The durable delivery queue: one row per (event, subscription); pending until a 2xx, retried
-- with backoff, dead (a dead letter) once the retry horizon has passed.
CREATE TABLE smsgate_webhook_deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    -- pending, delivered, dead
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- while pending: when the next attempt is due (a claim pushes it out by the lease)
    next_attempt_at REAL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX smsgate_webhook_deliveries_due
    ON smsgate_webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX smsgate_webhook_deliveries_state ON smsgate_webhook_deliveries (state, id);
CREATE INDEX smsgate_webhook_deliveries_subscription
    ON smsgate_webhook_deliveries (subscription_id, id);

-- Positions of readers that follow smsgate_events (the user-webhook relay), with a lease so
-- that one server at a time relays.
CREATE TABLE smsgate_event_cursors (
    name             TEXT PRIMARY KEY,
    position         INTEGER NOT NULL,
    owner            TEXT,
    lease_expires_at REAL
) WITHOUT ROWID;
