-- The CRM task's status as last seen, when it does not change the follow-up's state (no new revision).
UPDATE followups SET crm_status = :crm_status, crm_synced_at = :now
WHERE wave_id = :wave_id AND contact_id = :contact_id
