-- smsgate schema, version 3: the HTTP server's tables (API keys, opt-outs, inbound messages,
-- user webhooks and their durable delivery queue). Times are epoch seconds, as in version 1.

-- API keys: "sgk_<id>_<secret>" is shown once; only the SHA-256 of the secret is kept.
CREATE TABLE smsgate_api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    -- JSON lists; NULL means any purpose / any sender
    purposes     text,
    senders      text,
    -- requests per period ("100/s") and the burst it may save up; NULL: unlimited
    rate         text,
    burst        integer,
    -- messages per fixed window ("10000/d"); NULL: no quota
    quota        text,
    created_at   double precision NOT NULL,
    revoked_at   double precision
);

-- Messages counted against a key's quota, per fixed window.
CREATE TABLE smsgate_api_key_usage (
    key_id       text NOT NULL,
    window_start double precision NOT NULL,
    used         integer NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

-- Recipients who opted out: of one number of ours, or of all of them (our_number = '*').
CREATE TABLE smsgate_suppressions (
    recipient   text NOT NULL,
    our_number  text NOT NULL,
    -- keyword (STOP and friends), api, provider
    source      text NOT NULL,
    keyword     text,
    reason      text,
    created_at  double precision NOT NULL,
    PRIMARY KEY (recipient, our_number)
);

-- Messages people sent to our numbers, stored once per provider message id.
CREATE TABLE smsgate_inbound (
    id                  text PRIMARY KEY,
    provider            text NOT NULL,
    provider_message_id text NOT NULL,
    sender              text NOT NULL,
    to_number           text NOT NULL,
    body                text NOT NULL,
    -- JSON list of media URLs
    media               text NOT NULL,
    -- opt_out, opt_out_all, opt_in, help, or NULL
    action              text,
    received_at         double precision NOT NULL,
    raw                 text
);

CREATE UNIQUE INDEX smsgate_inbound_provider_id ON smsgate_inbound (provider, provider_message_id);
CREATE INDEX smsgate_inbound_sender ON smsgate_inbound (sender, id);

-- User webhook subscriptions; the secret signs every delivery (Standard Webhooks).
CREATE TABLE smsgate_webhook_subscriptions (
    id          text PRIMARY KEY,
    url         text NOT NULL,
    -- JSON list of event types; "*" matches every type
    events      text NOT NULL,
    secret      text NOT NULL,
    description text,
    created_at  double precision NOT NULL
);

-- The durable delivery queue: one row per (event, subscription); pending until a 2xx, retried
-- with backoff, dead (a dead letter) once the retry horizon has passed.
CREATE TABLE smsgate_webhook_deliveries (
    id              text PRIMARY KEY,
    event_id        text NOT NULL,
    subscription_id text NOT NULL,
    event_type      text NOT NULL,
    payload         text NOT NULL,
    -- pending, delivered, dead
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    -- while pending: when the next attempt is due (a claim pushes it out by the lease)
    next_attempt_at double precision,
    last_status     integer,
    last_error      text,
    created_at      double precision NOT NULL,
    updated_at      double precision NOT NULL
);

CREATE INDEX smsgate_webhook_deliveries_due
    ON smsgate_webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX smsgate_webhook_deliveries_state ON smsgate_webhook_deliveries (state, id);
CREATE INDEX smsgate_webhook_deliveries_subscription
    ON smsgate_webhook_deliveries (subscription_id, id);

-- Positions of readers that follow smsgate_events (the user-webhook relay), with a lease so
-- that one server at a time relays.
CREATE TABLE smsgate_event_cursors (
    name             text PRIMARY KEY,
    position         bigint NOT NULL,
    owner            text,
    lease_expires_at double precision
);
