-- A wave's follow-ups as the real-time alerts and CRM tasks show them.
SELECT contact_id, owner_type, owner, owner_source, rule_id, sla_due_at, escalation_target, crm_task_id, status,
       created_at
FROM followups
WHERE wave_id = :wave_id
