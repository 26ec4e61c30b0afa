-- smsgate schema, version 7: fragments of concatenated inbound messages (Vonage's concat-ref,
-- concat-part, concat-total), kept until every part has arrived so that a crash after the
-- provider got its 200 loses none. The whole message is then stored once in smsgate_inbound;
-- the parts are marked assembled (not deleted) so a part the provider retries later is still
-- recognised by its own message id instead of starting a new message.
CREATE TABLE smsgate_inbound_parts (
    provider            text NOT NULL,
    -- this part's own id at the provider: a retried webhook is stored once
    provider_message_id text NOT NULL,
    sender              text NOT NULL,
    to_number           text NOT NULL,
    reference           text NOT NULL,
    part_number         integer NOT NULL,
    total               integer NOT NULL,
    body                text NOT NULL,
    received_at         double precision NOT NULL,
    raw                 text,
    assembled           integer NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, provider_message_id)
);

-- the parts still waiting, per message being assembled
CREATE INDEX smsgate_inbound_parts_waiting
    ON smsgate_inbound_parts (provider, sender, to_number, reference, total)
    WHERE assembled = 0;
