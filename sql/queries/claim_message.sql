-- Claim one pending message for sending; no row changes when another task claimed it first.
UPDATE outbox SET status = 'sending', attempts = attempts + 1
WHERE wave_id = :wave_id AND kind = :kind AND recipient = :recipient AND status = 'pending'
