-- smsgate schema, version 5: the web console's users, sessions and sign-in lockout, the API keys
-- allowed into the console, and providers paused by an operator (the router skips them).

-- Console users: the password is kept only as a scrypt hash ("scrypt$n$r$p$salt$hash").
CREATE TABLE smsgate_console_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    -- admin or readonly
    role          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    last_login_at REAL
) WITHOUT ROWID;

-- Signed-in sessions: only the SHA-256 of the cookie's random token is kept.
CREATE TABLE smsgate_console_sessions (
    token_hash  TEXT PRIMARY KEY,
    -- "user:NAME" or "key:ID"
    principal   TEXT NOT NULL,
    role        TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
) WITHOUT ROWID;

-- API keys that may sign in to the console, and with which role.
CREATE TABLE smsgate_console_keys (
    key_id TEXT PRIMARY KEY,
    role   TEXT NOT NULL
) WITHOUT ROWID;

-- Failed sign-ins since the last success, per name typed (a user's name, an unknown name,
-- or "key:ID"), and until when sign-in with that name is refused.
CREATE TABLE smsgate_console_failures (
    name         TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until REAL
) WITHOUT ROWID;

-- Providers an operator paused: every worker's router skips them until they are resumed.
CREATE TABLE smsgate_provider_pauses (
    provider  TEXT PRIMARY KEY,
    paused_by TEXT NOT NULL,
    reason    TEXT,
    paused_at REAL NOT NULL
) WITHOUT ROWID;

-- A message's page lists the webhook deliveries of its events (event ids "evt_msg_<event id>").
CREATE INDEX smsgate_webhook_deliveries_event ON smsgate_webhook_deliveries (event_id);
