-- A wave's action items, with the ledger row of each one's tracker issue (none when no tracker
-- is set or the item got no issue): its status and, when it failed, why.
SELECT
    i.item_key, i.title, i.reason, i.owner, i.priority, i.risk, i.theme, i.due_date, i.checkpoints,
    i.status, i.tracker_issue, o.status AS tracker_status, o.last_error AS tracker_error
FROM action_items i
LEFT JOIN outbox o ON o.wave_id = i.wave_id AND o.kind = 'tracker_issue' AND o.recipient = i.item_key
WHERE i.wave_id = :wave_id
ORDER BY i.item_key
