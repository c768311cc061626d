-- A re-run refreshes the finding but never reopens or reassigns an item a person has worked on.
INSERT INTO action_items (wave_id, item_key, title, reason, owner, priority, due_date, created_at)
VALUES (:wave_id, :item_key, :title, :reason, :owner, :priority, :due_date, :now)
ON CONFLICT (wave_id, item_key) DO UPDATE SET title = excluded.title, reason = excluded.reason
