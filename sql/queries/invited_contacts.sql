-- Every contact invited to a wave (invitation sent), with the segments response rates are
-- broken down by, the score and time when the contact answered (responses set aside are not
-- answers), when they were reminded, and when they bounced or opted out, if ever.
SELECT
    a.contact_id, a.account_id, acc.name AS account_name,
    COALESCE(acc.country, '?') AS region, COALESCE(acc.tier, '?') AS tier, COALESCE(c.role, '?') AS role,
    r.score, r.answered_at, o.sent_at AS invited_at, rem.sent_at AS reminded_at, c.bounced_at, c.opted_out_at
FROM wave_audience a
JOIN outbox o ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
JOIN contacts c ON c.contact_id = a.contact_id
LEFT JOIN accounts acc ON acc.account_id = a.account_id
LEFT JOIN outbox rem
    ON rem.wave_id = a.wave_id AND rem.kind = 'reminder' AND rem.recipient = a.contact_id AND rem.status = 'sent'
LEFT JOIN responses r
    ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
WHERE a.wave_id = :wave_id
ORDER BY a.contact_id
