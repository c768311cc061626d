UPDATE outbox
SET status = :status, last_error = :error, message_id = :message_id, sent_at = :sent_at
WHERE wave_id = :wave_id AND kind = :kind AND recipient = :recipient
