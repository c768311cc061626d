-- A message's outcome, recorded by the sender that claimed it; a transiently refused one stays
-- pending until :next_attempt_at.
UPDATE outbox
SET status = :status, last_error = :error, message_id = :message_id, sent_at = :sent_at,
    next_attempt_at = :next_attempt_at, claimed_by = NULL, claimed_at = NULL
WHERE wave_id = :wave_id AND kind = :kind AND recipient = :recipient AND status = 'sending'
