-- Each item whose tracker issue the ledger has recorded as created gets the issue's link (the
-- ledger row's message_id); an item that already names an issue keeps it.
UPDATE action_items
SET tracker_issue = (
    SELECT o.message_id FROM outbox o
    WHERE o.wave_id = action_items.wave_id AND o.kind = 'tracker_issue' AND o.recipient = action_items.item_key
)
WHERE wave_id = :wave_id AND tracker_issue IS NULL AND EXISTS (
    SELECT 1 FROM outbox o
    WHERE o.wave_id = action_items.wave_id AND o.kind = 'tracker_issue' AND o.recipient = action_items.item_key
      AND o.status = 'sent' AND o.message_id IS NOT NULL
)
