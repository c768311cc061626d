-- A late bounce or complaint, once: an event received again (a re-read mailbox, a webhook retried
-- by the ESP) has the same key and is left alone.
INSERT INTO delivery_events (
    event_key, source, event, address, message_id, status, reason, occurred_at, received_at
)
VALUES (
    :event_key, :source, :event, :address, :message_id, :status, :reason, :occurred_at, :received_at
)
ON CONFLICT (event_key) DO NOTHING
