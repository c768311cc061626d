SELECT wave_id,
       SUM(CASE WHEN included THEN 1 ELSE 0 END) AS included,
       SUM(CASE WHEN included THEN 0 ELSE 1 END) AS excluded
FROM wave_audience
WHERE wave_id IN :wave_ids
GROUP BY wave_id
