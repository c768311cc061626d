-- Late bounces and complaints: what arrives after the SMTP session (delivery status notifications
-- and abuse reports read from the bounce mailbox, ESP webhooks such as SendGrid's and Amazon SES's).
-- One row per event, keyed by `event_key` (the source's own id for it), so an event received twice
-- is recorded and applied once. `event`: bounce (the address is bad: contacts.bounced_at),
-- complaint (the recipient reported the email as spam: contacts.opted_out_at), or other (recorded,
-- never suppressing: a policy refusal, a blocked or dropped message).
-- address is NULL only for a report that hides it (a redacted complaint) and whose Message-ID
-- matches no email. wave_id, kind and recipient name the outbox row the event is about, found by
-- Message-ID, else the last email sent to the address. applied_at: when it was applied to contacts.
CREATE TABLE delivery_events (
    event_key       VARCHAR(300) PRIMARY KEY,
    source          VARCHAR(16) NOT NULL,
    event           VARCHAR(16) NOT NULL CHECK (event IN ('bounce', 'complaint', 'other')),
    address         VARCHAR(254),
    message_id      VARCHAR(254),
    wave_id         VARCHAR(128),
    kind            VARCHAR(32),
    recipient       VARCHAR(254),
    status          VARCHAR(32),
    reason          VARCHAR(1000),
    occurred_at     TIMESTAMP,
    received_at     TIMESTAMP NOT NULL,
    applied_at      TIMESTAMP
);
CREATE INDEX delivery_events_address ON delivery_events (address);
CREATE INDEX delivery_events_pending ON delivery_events (applied_at);
CREATE INDEX outbox_message_id ON outbox (message_id);
CREATE INDEX contacts_email_lower ON contacts (LOWER(email));
CREATE INDEX outbox_address_lower ON outbox (LOWER(address));
