-- One follow-up with its customer, account, answer and wave: the follow-up form, and the state
-- every change of the follow-up starts from.
SELECT f.wave_id, f.contact_id, f.account_id, f.score, f.owner_type, f.owner, f.owner_source, f.status,
       f.created_at, f.sla_due_at, f.escalation_target, f.revision, f.claimed_by, f.claimed_at,
       f.root_cause, f.root_cause_other, f.incentive, f.incentive_root_cause, f.incentive_at, f.rules_version,
       f.recovered, f.closed_at, f.escalated_at, f.escalated_to, f.crm_status, f.crm_synced_at,
       c.name AS contact_name, c.email, c.role, acc.name AS account_name, acc.tier, acc.vip,
       r.comment, w.name AS wave_name, w.program, w.country
FROM followups f
JOIN waves w ON w.wave_id = f.wave_id
JOIN contacts c ON c.contact_id = f.contact_id
LEFT JOIN accounts acc ON acc.account_id = f.account_id
LEFT JOIN responses r ON r.wave_id = f.wave_id AND r.contact_id = f.contact_id
WHERE f.wave_id = :wave_id AND f.contact_id = :contact_id
