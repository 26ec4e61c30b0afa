-- smsgate schema, version 5: the web console's users, sessions and sign-in lockout, the API keys
-- allowed into the console, and providers paused by an operator (the router skips them).

-- Console users: the password is kept only as a scrypt hash ("scrypt$n$r$p$salt$hash").
CREATE TABLE smsgate_console_users (
    name          text PRIMARY KEY,
    password_hash text NOT NULL,
    -- admin or readonly
    role          text NOT NULL,
    created_at    double precision NOT NULL,
    last_login_at double precision
);

-- Signed-in sessions: only the SHA-256 of the cookie's random token is kept.
CREATE TABLE smsgate_console_sessions (
    token_hash  text PRIMARY KEY,
    -- "user:NAME" or "key:ID"
    principal   text NOT NULL,
    role        text NOT NULL,
    csrf_token  text NOT NULL,
    created_at  double precision NOT NULL,
    expires_at  double precision NOT NULL
);

-- API keys that may sign in to the console, and with which role.
CREATE TABLE smsgate_console_keys (
    key_id text PRIMARY KEY,
    role   text NOT NULL
);

-- Failed sign-ins since the last success, per name typed (a user's name, an unknown name,
-- or "key:ID"), and until when sign-in with that name is refused.
CREATE TABLE smsgate_console_failures (
    name         text PRIMARY KEY,
    failures     integer NOT NULL,
    locked_until double precision
);

-- Providers an operator paused: every worker's router skips them until they are resumed.
CREATE TABLE smsgate_provider_pauses (
    provider  text PRIMARY KEY,
    paused_by text NOT NULL,
    reason    text,
    paused_at double precision NOT NULL
);

-- A message's page lists the webhook deliveries of its events (event ids "evt_msg_<event id>").
CREATE INDEX smsgate_webhook_deliveries_event ON smsgate_webhook_deliveries (event_id);
