INSERT INTO wave_milestones (wave_id, milestone, due_at)
VALUES (:wave_id, :milestone, :due_at)
ON CONFLICT (wave_id, milestone) DO UPDATE SET due_at = excluded.due_at
