-- Waves the planner must not start: every planned wave (started by hand from the trigger form, or
-- by the planner and already running) and every start the planner has confirmed.
SELECT wave_id FROM waves
UNION
SELECT wave_id FROM wave_starts WHERE started_at IS NOT NULL
