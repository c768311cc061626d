-- Per account: contacts invited (invitation sent) and how many of them answered.
SELECT
    acc.account_id, acc.name AS account_name, acc.csm, acc.sales_owner, acc.vip,
    COUNT(o.recipient) AS invited,
    COUNT(r.contact_id) AS responses
FROM wave_audience a
JOIN accounts acc ON acc.account_id = a.account_id
JOIN outbox o ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
LEFT JOIN responses r
    ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
WHERE a.wave_id = :wave_id
GROUP BY acc.account_id, acc.name, acc.csm, acc.sales_owner, acc.vip
ORDER BY acc.account_id
