-- A wave's rejected input rows with the reason of each (the first :limit).
SELECT source, row_number, field, value, reason
FROM quarantine
WHERE wave_id = :wave_id
ORDER BY source, row_number, field
LIMIT :limit
