-- The CRM task id returned when a follow-up's task was opened (kept in the ledger row's
-- message_id), copied to the follow-up.
UPDATE followups
SET crm_task_id = (
    SELECT o.message_id FROM outbox o
    WHERE o.wave_id = followups.wave_id AND o.kind = 'crm_task' AND o.recipient = followups.contact_id
)
WHERE wave_id = :wave_id AND crm_task_id IS NULL
  AND EXISTS (
      SELECT 1 FROM outbox o
      WHERE o.wave_id = followups.wave_id AND o.kind = 'crm_task' AND o.recipient = followups.contact_id
        AND o.status = 'sent' AND o.message_id IS NOT NULL
  )
