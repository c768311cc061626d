-- A wave's action items that are done and carry the note customers may read.
SELECT item_key, title, priority, public_note, completed_at
FROM action_items
WHERE wave_id = :wave_id AND status = 'done' AND public_note IS NOT NULL
ORDER BY CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, completed_at, item_key
