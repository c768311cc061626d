SELECT wave_id, status, COUNT(*) AS n FROM followups WHERE wave_id IN :wave_ids
GROUP BY wave_id, status
