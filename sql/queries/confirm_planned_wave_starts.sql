-- A claimed start whose run has already planned its wave (the waves row names the planner's run)
-- is confirmed, even if the planner stopped before confirming it.
UPDATE wave_starts SET started_at = :now
WHERE started_at IS NULL
  AND EXISTS (SELECT 1 FROM waves WHERE waves.wave_id = wave_starts.wave_id AND waves.run_id = wave_starts.run_id)
