-- The first of a wave's rejected input rows (file, row, field, value, reason), as a report shows them.
SELECT source, row_number, field, value, reason
FROM quarantine
WHERE wave_id = :wave_id
ORDER BY source, row_number, field
LIMIT :limit
