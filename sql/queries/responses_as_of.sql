-- A wave's responses as they stood at :cutoff: each contact's latest revision submitted by then,
-- answered_at staying the first submission. Responses set aside by the responses check are left out.
SELECT
    r.contact_id, c.name AS contact_name, c.email, c.role, c.locale,
    h.score, h.comment, h.pillar_answers, r.answered_at,
    acc.account_id, acc.name AS account_name, acc.tier, acc.sales_owner, acc.csm, acc.vip
FROM responses r
JOIN response_history h ON h.wave_id = r.wave_id AND h.contact_id = r.contact_id
JOIN contacts c ON c.contact_id = r.contact_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE r.wave_id = :wave_id AND r.quarantine_reason IS NULL
    AND h.revision = (
        SELECT MAX(h2.revision) FROM response_history h2
        WHERE h2.wave_id = r.wave_id AND h2.contact_id = r.contact_id AND h2.submitted_at <= :cutoff
    )
ORDER BY r.answered_at, r.contact_id
