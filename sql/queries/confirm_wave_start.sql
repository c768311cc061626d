-- Airflow has the wave's run: the start is confirmed (once; a repeat keeps the first time).
UPDATE wave_starts SET started_at = :now
WHERE run_id = :run_id AND started_at IS NULL
