-- smsgate outbox schema, version 2: state shared by every worker of one store.

-- Token buckets (smsgate.ratelimit.BucketBackend): tokens at updated_at; negative while a 429
-- penalty is served.
CREATE TABLE smsgate_rate_buckets (
    key        text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at double precision NOT NULL
);

-- Provider receipts that arrived before the send that they describe was recorded (a fast
-- provider can call back before the worker writes the provider's message id). They are applied,
-- and deleted from here, when that send is recorded.
CREATE TABLE smsgate_pending_receipts (
    event_key           text PRIMARY KEY,
    provider            text NOT NULL,
    provider_message_id text NOT NULL,
    status              text NOT NULL,
    at                  double precision NOT NULL,
    reason              text,
    raw                 text,
    received_at         double precision NOT NULL
);

CREATE INDEX smsgate_pending_receipts_message
    ON smsgate_pending_receipts (provider_message_id, provider);
