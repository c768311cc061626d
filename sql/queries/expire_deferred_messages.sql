-- Messages still deferred after a transient refusal whose next try would fall after the mailing's
-- window: failed with their last reply, like a mail server's queue lifetime.
UPDATE outbox
SET status = 'failed', next_attempt_at = NULL,
    last_error = 'not delivered within the mailing''s window; last reply: ' || COALESCE(last_error, '')
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'
  AND attempts > 0 AND next_attempt_at > :window_end
