-- One wave's detractors and where each follow-up stands.
SELECT f.contact_id, f.account_id, a.name AS account_name, f.score, f.owner_type, f.owner, f.owner_source,
       f.status, f.created_at
FROM followups f
LEFT JOIN accounts a ON a.account_id = f.account_id
WHERE f.wave_id = :wave_id
ORDER BY f.score, f.created_at, f.contact_id
