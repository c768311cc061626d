-- NPS database, version 9: the closed loop. Each follow-up moves open -> contacting -> reached
-- -> closed (or unreachable), and every step is a row of its call log (`followup_events`).
--
-- Optimistic concurrency: `revision` goes up by one with every change, and a change is written
-- only `WHERE revision = <the revision it was computed from>`; the call-log row of a change is
-- keyed by the revision it produced. A claim (`claimed_by`, `claimed_at`) says who is calling
-- right now, so two people never call the same customer at once.
--
-- The SLA sweep reads `sla_due_at` and `escalation_target`, and the CRM sync `crm_task_id`: all three
-- are added by migration 008 (the real-time routing rules), not here.

ALTER TABLE followups ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE followups ADD COLUMN claimed_by VARCHAR(254);
ALTER TABLE followups ADD COLUMN claimed_at TIMESTAMP;
ALTER TABLE followups ADD COLUMN root_cause VARCHAR(64);
ALTER TABLE followups ADD COLUMN root_cause_other VARCHAR(1000);
ALTER TABLE followups ADD COLUMN incentive VARCHAR(64);
ALTER TABLE followups ADD COLUMN incentive_root_cause VARCHAR(64);
ALTER TABLE followups ADD COLUMN incentive_at TIMESTAMP;
ALTER TABLE followups ADD COLUMN rules_version INTEGER;
ALTER TABLE followups ADD COLUMN recovered BOOLEAN;
ALTER TABLE followups ADD COLUMN closed_at TIMESTAMP;
ALTER TABLE followups ADD COLUMN escalated_at TIMESTAMP;
ALTER TABLE followups ADD COLUMN escalated_to VARCHAR(254);
ALTER TABLE followups ADD COLUMN crm_status VARCHAR(64);
ALTER TABLE followups ADD COLUMN crm_synced_at TIMESTAMP;
CREATE INDEX followups_tracking_status ON followups (status, escalated_at);

-- The call log: one row per change of a follow-up, written in the same transaction as the change.
-- action: claim, release, attempt, unreachable, root_cause, close, escalation, crm_sync
-- outcome: of an attempt tried / reached / call_back_later; of a close recovered / not_recovered;
-- of a root cause its id; of a CRM sync the CRM task's status.
-- source: form (the internal follow-up form), crm (status sync), sweep (SLA sweep), api.
CREATE TABLE followup_events (
    wave_id         VARCHAR(128) NOT NULL,
    contact_id      VARCHAR(64) NOT NULL,
    revision        INTEGER NOT NULL,
    event_at        TIMESTAMP NOT NULL,
    actor           VARCHAR(254) NOT NULL,
    source          VARCHAR(16) NOT NULL,
    action          VARCHAR(16) NOT NULL,
    outcome         VARCHAR(64),
    from_status     VARCHAR(16) NOT NULL,
    to_status       VARCHAR(16) NOT NULL,
    note            TEXT,
    PRIMARY KEY (wave_id, contact_id, revision),
    FOREIGN KEY (wave_id, contact_id) REFERENCES followups (wave_id, contact_id)
);
CREATE INDEX followup_events_at ON followup_events (event_at);

-- Follow-ups opened before tracking began are not escalated now by the first SLA sweep.
UPDATE followups SET escalated_at = created_at WHERE escalated_at IS NULL;
