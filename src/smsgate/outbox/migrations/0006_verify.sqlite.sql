-- smsgate schema, version 6: one-time code verifications and their fraud guard (smsgate.verify).
-- No code is ever stored: a verification keeps a random salt (its code is an HMAC of the salt
-- under the server secret) and the HMAC a typed code must match. Times are epoch seconds.

CREATE TABLE smsgate_verifications (
    id           TEXT PRIMARY KEY,
    to_number    TEXT NOT NULL,
    channel      TEXT NOT NULL,
    -- pending, approved, canceled, expired, max_attempts, blocked
    status       TEXT NOT NULL,
    salt         TEXT,
    code_hash    TEXT,
    code_length  INTEGER NOT NULL,
    locale       TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    sends        INTEGER NOT NULL,
    max_sends    INTEGER NOT NULL,
    -- JSON list of the outbox message ids that carried its code
    message_ids  TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    country      TEXT,
    client_ip    TEXT,
    api_key      TEXT,
    -- why it ended (or was refused); NULL while pending
    reason       TEXT,
    -- test-mode magic number behaviour: approve, fail, or NULL
    test         TEXT
) WITHOUT ROWID;

-- at most one pending verification per number and channel is looked up at every start and check
CREATE INDEX smsgate_verifications_pending ON smsgate_verifications (to_number, channel)
    WHERE status = 'pending';

-- Every guard decision, allowed or not, with its reason (an audit trail, never a code).
CREATE TABLE smsgate_verify_decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              REAL NOT NULL,
    -- start, resend, check
    action          TEXT NOT NULL,
    -- allowed, monitored, refused, blocked
    outcome         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    verification_id TEXT,
    to_number       TEXT,
    prefix          TEXT,
    country         TEXT,
    client_ip       TEXT,
    api_key         TEXT
);
CREATE INDEX smsgate_verify_decisions_verification ON smsgate_verify_decisions (verification_id);

-- Starts and approvals per destination prefix and time slot (slot = start time // slot length):
-- the pumping detector's sliding window. An approval counts in the slot its verification started.
CREATE TABLE smsgate_verify_traffic (
    prefix   TEXT NOT NULL,
    slot     INTEGER NOT NULL,
    started  INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    PRIMARY KEY (prefix, slot)
) WITHOUT ROWID;

-- Prefixes blocked by the pumping detector (or by hand); a block ends at blocked_until or when
-- lifted. Past blocks stay: they decide how long the next one lasts.
CREATE TABLE smsgate_verify_blocks (
    id            TEXT PRIMARY KEY,
    prefix        TEXT NOT NULL,
    level         INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    started       INTEGER NOT NULL,
    approved      INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    blocked_until REAL NOT NULL,
    lifted_at     REAL,
    lifted_by     TEXT
) WITHOUT ROWID;
CREATE INDEX smsgate_verify_blocks_prefix ON smsgate_verify_blocks (prefix, created_at);

-- The guard's token buckets (number, IP, API key, prefix, country), as smsgate_rate_buckets.
CREATE TABLE smsgate_verify_buckets (
    key        TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
