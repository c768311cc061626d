-- Optimistic concurrency: the change is written only if nobody changed the follow-up since it
-- was read (same revision); 0 rows updated means someone else was first.
UPDATE followups SET
    status = :status,
    claimed_by = :claimed_by,
    claimed_at = :claimed_at,
    root_cause = :root_cause,
    root_cause_other = :root_cause_other,
    incentive = :incentive,
    incentive_root_cause = :incentive_root_cause,
    incentive_at = :incentive_at,
    rules_version = :rules_version,
    recovered = :recovered,
    closed_at = :closed_at,
    escalated_at = :escalated_at,
    escalated_to = :escalated_to,
    crm_status = :crm_status,
    crm_synced_at = :crm_synced_at,
    revision = revision + 1
WHERE wave_id = :wave_id AND contact_id = :contact_id AND revision = :revision
