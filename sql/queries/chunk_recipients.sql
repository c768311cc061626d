-- The contacts of one chunk of a wave-wide email (one mapped send task).
SELECT a.contact_id, a.email, a.name, a.locale
FROM outbox o
JOIN wave_audience a ON a.wave_id = o.wave_id AND a.contact_id = o.recipient
WHERE o.wave_id = :wave_id AND o.kind = :kind AND o.chunk = :chunk
ORDER BY a.contact_id
