INSERT INTO waves (wave_id, program, name, country, status, params, open_at, close_at, created_at, dag_id, run_id)
VALUES (:wave_id, :program, :name, :country, 'planned', :params, :open_at, :close_at, :now, :dag_id, :run_id)
ON CONFLICT (wave_id) DO UPDATE SET
    params = excluded.params,
    open_at = excluded.open_at,
    close_at = excluded.close_at,
    dag_id = COALESCE(excluded.dag_id, waves.dag_id),
    run_id = COALESCE(excluded.run_id, waves.run_id)
