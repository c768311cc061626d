-- NPS database, version 8: detractors reach a person within minutes (dags/nps_responses.py).
-- The alerts, CRM tasks and score-band emails sent while a wave is open are rows of the `outbox`
-- ledger like every other message (kinds detractor_alert, response_alert, teams_alert,
-- vip_escalation, executive_alert, crm_task, followup_*), so no new ledger table is needed.
-- A follow-up records the routing rule that chose its owner (file version included), when first
-- contact is due (business hours or days of the wave's country), whom to escalate to when late,
-- and the id of the task opened for it in the CRM.

ALTER TABLE followups ADD COLUMN rule_id VARCHAR(200);
ALTER TABLE followups ADD COLUMN sla_due_at TIMESTAMP;
ALTER TABLE followups ADD COLUMN escalation_target VARCHAR(254);
ALTER TABLE followups ADD COLUMN crm_task_id VARCHAR(254);

-- Annual recurring revenue of an account, for the routing rules' arr_min / arr_max conditions.
-- Nothing fills it yet from the contacts file: set it from the CRM (or SQL); a rule with an ARR
-- condition never matches an account whose ARR is unknown.
ALTER TABLE accounts ADD COLUMN arr NUMERIC(16, 2);

CREATE INDEX outbox_recipient ON outbox (wave_id, recipient);
CREATE INDEX followups_account ON followups (account_id, status);
