-- Claim one due message for sending just before its send: still pending and due by :due (never
-- tried, or its retry time come), else another sender took it first or deferred it, and nothing is
-- claimed. `attempts` is returned as it was before this attempt.
UPDATE outbox
SET status = 'sending', attempts = attempts + 1, claimed_by = :sender, claimed_at = :now
WHERE wave_id = :wave_id AND kind = :kind AND recipient = :recipient AND status = 'pending'
  AND (next_attempt_at IS NULL OR next_attempt_at <= :due)
RETURNING wave_id, kind, recipient, channel, address, attempts - 1 AS attempts, doubts
