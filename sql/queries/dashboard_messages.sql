SELECT wave_id, kind, status, COUNT(*) AS n FROM outbox WHERE wave_id IN :wave_ids
GROUP BY wave_id, kind, status
