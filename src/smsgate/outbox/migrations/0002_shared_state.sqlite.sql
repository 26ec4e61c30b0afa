-- smsgate outbox schema, version 2: state shared by every worker of one store.

-- Token buckets (smsgate.ratelimit.BucketBackend): tokens at updated_at; negative while a 429
-- penalty is served.
CREATE TABLE smsgate_rate_buckets (
    key        TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

-- Provider receipts that arrived before the send that they describe was recorded (a fast
-- provider can call back before the worker writes the provider's message id). They are applied,
-- and deleted from here, when that send is recorded.
CREATE TABLE smsgate_pending_receipts (
    event_key           TEXT PRIMARY KEY,
    provider            TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status              TEXT NOT NULL,
    at                  REAL NOT NULL,
    reason              TEXT,
    raw                 TEXT,
    received_at         REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX smsgate_pending_receipts_message
    ON smsgate_pending_receipts (provider_message_id, provider);
