-- A wave's responses; those set aside by the responses check only when asked for.
SELECT
    r.contact_id, c.name AS contact_name, c.email, c.role, c.locale,
    r.score, r.comment, r.pillar_answers, r.answered_at,
    acc.account_id, acc.name AS account_name, acc.tier, acc.sales_owner, acc.csm, acc.vip
FROM responses r
JOIN contacts c ON c.contact_id = r.contact_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE r.wave_id = :wave_id AND (r.quarantine_reason IS NULL OR :with_quarantined = 1)
ORDER BY r.answered_at, r.contact_id
