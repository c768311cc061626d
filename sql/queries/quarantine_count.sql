SELECT COUNT(*) AS n FROM quarantine WHERE wave_id = :wave_id
