-- A row still 'sending' whose sender died mid-send (claimed by this same sender in an earlier try or
-- process, or by any sender longer ago than the lease): its outcome is unknown. Policy 'hold': kept
-- 'in_doubt' for a person; 'resend': pending again, counted in `doubts` (it may arrive twice; its
-- Message-ID stays the same, so the copies are recognisable).
UPDATE outbox
SET status = CASE WHEN :policy = 'resend' THEN 'pending' ELSE 'in_doubt' END,
    doubts = doubts + 1, next_attempt_at = NULL, claimed_by = NULL, claimed_at = NULL,
    last_error = 'send interrupted; outcome unknown (the message may have arrived)'
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'sending'
  AND (claimed_by IS NULL OR claimed_by = :sender OR claimed_at < :lease_start)
