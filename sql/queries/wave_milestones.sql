-- A wave's milestones in time order: when each was due and when it was done.
SELECT milestone, due_at, done_at
FROM wave_milestones
WHERE wave_id = :wave_id
ORDER BY due_at, milestone
