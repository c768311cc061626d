INSERT INTO quarantine (wave_id, source, row_number, field, value, reason)
VALUES (:wave_id, :source, :row_number, :field, :value, :reason)
ON CONFLICT (wave_id, source, row_number, field) DO UPDATE SET value = excluded.value, reason = excluded.reason
