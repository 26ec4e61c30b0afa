-- smsgate schema, version 8: user-webhook deliveries are jobs of the one lease queue, as messages
-- are (docs/architecture.md, *The lease queue*). A claim records who holds a delivery and until
-- when, instead of pushing its next attempt past the attempt's timeout; a server that dies
-- mid-attempt leaves the lease to expire and the next claim takes the delivery over.
ALTER TABLE smsgate_webhook_deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE smsgate_webhook_deliveries ADD COLUMN lease_expires_at double precision;

CREATE INDEX smsgate_webhook_deliveries_leases
    ON smsgate_webhook_deliveries (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
