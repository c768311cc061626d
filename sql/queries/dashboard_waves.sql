-- The dashboard's waves, latest first (optionally one program's, or one wave), with the run that runs each.
SELECT wave_id, program, name, country, status, open_at, close_at, closed_at, dag_id, run_id
FROM waves
WHERE (:program IS NULL OR program = :program)
  AND (:wave_id IS NULL OR wave_id = :wave_id)
ORDER BY open_at DESC, wave_id
LIMIT :limit
