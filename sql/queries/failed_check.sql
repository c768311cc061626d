-- The data check that failed a task: the wave's latest failed check stored since the try started.
SELECT step, suite, summary, checked_at
FROM check_results
WHERE wave_id = :wave_id AND NOT success AND checked_at >= :since
ORDER BY checked_at DESC
LIMIT 1
