SELECT
    f.wave_id, f.contact_id, f.account_id, f.score, f.owner_type, f.owner, f.owner_source, f.status,
    c.name AS contact_name, c.email, acc.name AS account_name, acc.vip, acc.csm, r.comment
FROM followups f
JOIN contacts c ON c.contact_id = f.contact_id
JOIN accounts acc ON acc.account_id = f.account_id
LEFT JOIN responses r ON r.wave_id = f.wave_id AND r.contact_id = f.contact_id
WHERE f.wave_id = :wave_id
ORDER BY f.score, f.contact_id
