-- A wave's action items for the dashboard: where each stands and, once done, what customers are told.
SELECT item_key, title, reason, owner, priority, status, public_note, completed_at
FROM action_items
WHERE wave_id = :wave_id
ORDER BY CASE status WHEN 'done' THEN 1 ELSE 0 END,
         CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, item_key
