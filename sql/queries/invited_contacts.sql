-- Every contact invited to a wave (invitation sent), with the segments response rates are
-- broken down by and the score, when the contact answered (responses set aside are not answers).
SELECT
    a.contact_id, a.account_id, acc.name AS account_name,
    COALESCE(acc.country, '?') AS region, COALESCE(acc.tier, '?') AS tier, COALESCE(c.role, '?') AS role,
    r.score
FROM wave_audience a
JOIN outbox o ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
JOIN contacts c ON c.contact_id = a.contact_id
LEFT JOIN accounts acc ON acc.account_id = a.account_id
LEFT JOIN responses r
    ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
WHERE a.wave_id = :wave_id
ORDER BY a.contact_id
