-- SLA sweep: follow-ups nobody has contacted yet and that were never escalated, with what the
-- due time and the escalation email need.
SELECT f.wave_id, f.contact_id, f.score, f.owner, f.owner_type, f.created_at, f.sla_due_at, f.escalation_target,
       c.name AS contact_name, acc.name AS account_name, r.comment, w.name AS wave_name, w.country
FROM followups f
JOIN waves w ON w.wave_id = f.wave_id
JOIN contacts c ON c.contact_id = f.contact_id
LEFT JOIN accounts acc ON acc.account_id = f.account_id
LEFT JOIN responses r ON r.wave_id = f.wave_id AND r.contact_id = f.contact_id
WHERE f.status = 'open' AND f.escalated_at IS NULL
ORDER BY f.wave_id, f.contact_id
