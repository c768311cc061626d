-- A re-run refreshes the finding (title, reason, theme) but never reopens, reassigns or re-dates
-- an item a person has worked on; risk and checkpoints are set once (kept when already there), and
-- the tracker issue is written only by the tracker step (`store_tracker_issues`).
INSERT INTO action_items
    (wave_id, item_key, title, reason, owner, priority, due_date, created_at, theme, risk, checkpoints)
VALUES
    (:wave_id, :item_key, :title, :reason, :owner, :priority, :due_date, :now, :theme, :risk, :checkpoints)
ON CONFLICT (wave_id, item_key) DO UPDATE SET
    title = excluded.title,
    reason = excluded.reason,
    theme = excluded.theme,
    risk = COALESCE(action_items.risk, excluded.risk),
    checkpoints = COALESCE(action_items.checkpoints, excluded.checkpoints)
