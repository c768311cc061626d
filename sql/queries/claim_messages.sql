-- Claim the next pending messages of a kind (of one chunk, when given) that are due (never tried, or
-- whose retry time has come by :now) for sending, in one statement: a row another task claimed first
-- is no longer pending and is left to it. `attempts` is returned as it was before this attempt.
UPDATE outbox SET status = 'sending', attempts = attempts + 1
WHERE wave_id = :wave_id AND kind = :kind AND status = 'pending'
  AND recipient IN (
      SELECT recipient FROM outbox
      WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'
        AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
      ORDER BY recipient
      LIMIT :limit
  )
RETURNING wave_id, kind, recipient, channel, address, attempts - 1 AS attempts
