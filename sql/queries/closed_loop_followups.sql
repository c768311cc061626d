-- Closed-loop report: every follow-up opened before the end of the month, with its root cause,
-- incentive and outcome.
SELECT f.wave_id, f.contact_id, f.score, f.owner, f.created_at, f.status, f.root_cause, f.root_cause_other,
       f.incentive, f.incentive_root_cause, f.recovered, c.name AS contact_name, acc.name AS account_name
FROM followups f
JOIN contacts c ON c.contact_id = f.contact_id
LEFT JOIN accounts acc ON acc.account_id = f.account_id
WHERE f.created_at < :end
ORDER BY f.wave_id, f.contact_id
