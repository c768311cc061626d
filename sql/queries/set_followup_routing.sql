-- The rule behind a follow-up, its first-contact due time and escalation target, written once:
-- the follow-up's first routing (real-time or at close) keeps them.
UPDATE followups
SET rule_id = :rule_id, sla_due_at = :sla_due_at, escalation_target = :escalation_target
WHERE wave_id = :wave_id AND contact_id = :contact_id AND rule_id IS NULL
