SELECT wave_id, step, suite, success, evaluated, failed, warnings, summary, checked_at
FROM check_results
WHERE wave_id IN :wave_ids
ORDER BY checked_at
