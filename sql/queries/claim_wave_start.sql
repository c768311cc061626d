-- The planner claims a due wave before it triggers the wave's run; an earlier claim is kept.
INSERT INTO wave_starts (wave_id, run_id, calendar_file, wave_index, conf, planner_run_id, claimed_at)
VALUES (:wave_id, :run_id, :calendar_file, :wave_index, :conf, :planner_run_id, :now)
ON CONFLICT (wave_id) DO NOTHING
