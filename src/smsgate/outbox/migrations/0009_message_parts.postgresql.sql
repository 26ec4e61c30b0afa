-- smsgate schema, version 9: the part ids of long messages sent through a provider that
-- reports one receipt per part (SMPP), written in the transaction that records the send, so the
-- receipts of the parts still fold into the message's status after a restart (docs/smpp.md).
-- The rows of a message go once its parts' receipts have been folded.
CREATE TABLE smsgate_message_parts (
    provider     text NOT NULL,
    -- the part's id in lower case without leading zeros; a receipt is looked up by each form
    -- its id may take (hex or decimal)
    part_key     text NOT NULL,
    message_id   text NOT NULL,
    part_number  integer NOT NULL,
    total        integer NOT NULL,
    -- the part's id as the provider gave it
    part_id      text NOT NULL,
    -- the part's final status once its receipt came, else NULL
    status       text,
    error_code   text,
    PRIMARY KEY (provider, part_key)
);

CREATE INDEX smsgate_message_parts_message ON smsgate_message_parts (message_id);
