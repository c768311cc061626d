-- The program's waves up to and including this one, latest first: the flash chart's trend.
SELECT w.wave_id, w.name
FROM waves w
JOIN waves this_wave ON this_wave.wave_id = :wave_id
WHERE w.program = this_wave.program AND w.close_at <= this_wave.close_at
ORDER BY w.close_at DESC
LIMIT :limit
