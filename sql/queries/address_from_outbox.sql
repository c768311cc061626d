-- A report that hides the recipient (feedback loops often redact it) is about the address its
-- Message-ID was sent to.
UPDATE delivery_events
SET address = (
    SELECT o.address FROM outbox o
    WHERE o.message_id = delivery_events.message_id
    ORDER BY o.sent_at DESC, o.wave_id, o.kind
    LIMIT 1
)
WHERE applied_at IS NULL AND address IS NULL AND message_id IS NOT NULL
