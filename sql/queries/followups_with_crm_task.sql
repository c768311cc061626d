-- CRM status sync: follow-ups still in progress that have a CRM task (column from migration 008).
SELECT wave_id, contact_id, status, crm_task_id, crm_status
FROM followups
WHERE status <> 'closed' AND crm_task_id IS NOT NULL AND crm_task_id <> ''
ORDER BY wave_id, contact_id
