SELECT wave_id, milestone, due_at, done_at FROM wave_milestones WHERE wave_id IN :wave_ids
