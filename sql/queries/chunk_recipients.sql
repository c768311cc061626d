-- The contacts of one chunk of a wave-wide email (one mapped send task), with what their
-- times are written in: their own time zone, else their account's country's.
SELECT a.contact_id, a.email, a.name, a.locale, c.timezone, acc.country AS account_country
FROM outbox o
JOIN wave_audience a ON a.wave_id = o.wave_id AND a.contact_id = o.recipient
JOIN contacts c ON c.contact_id = a.contact_id
LEFT JOIN accounts acc ON acc.account_id = a.account_id
WHERE o.wave_id = :wave_id AND o.kind = :kind AND o.chunk = :chunk
ORDER BY a.contact_id
