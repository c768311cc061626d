INSERT INTO waves (wave_id, program, name, country, status, params, open_at, close_at, created_at)
VALUES (:wave_id, :program, :name, :country, 'planned', :params, :open_at, :close_at, :now)
ON CONFLICT (wave_id) DO UPDATE SET
    params = excluded.params,
    open_at = excluded.open_at,
    close_at = excluded.close_at
