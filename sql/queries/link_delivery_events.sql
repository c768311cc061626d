-- The outbox row each new event is about: the email with its Message-ID, else (second statement)
-- the last email sent to its address.
UPDATE delivery_events
SET (wave_id, kind, recipient) = (
    SELECT o.wave_id, o.kind, o.recipient
    FROM outbox o
    WHERE o.message_id = delivery_events.message_id
    ORDER BY o.sent_at DESC, o.wave_id, o.kind
    LIMIT 1
)
WHERE applied_at IS NULL AND message_id IS NOT NULL;

UPDATE delivery_events
SET (wave_id, kind, recipient) = (
    SELECT o.wave_id, o.kind, o.recipient
    FROM outbox o
    WHERE o.channel = 'email' AND o.sent_at IS NOT NULL AND LOWER(o.address) = LOWER(delivery_events.address)
    ORDER BY o.sent_at DESC, o.wave_id, o.kind
    LIMIT 1
)
WHERE applied_at IS NULL AND wave_id IS NULL AND address IS NOT NULL
