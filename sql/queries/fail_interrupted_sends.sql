-- A row still 'sending' was claimed by an attempt that died mid-send: its outcome is unknown,
-- and sending again could email someone twice. Record it for a person to look at.
UPDATE outbox
SET status = 'failed', last_error = 'send interrupted; outcome unknown, not retried to avoid a duplicate'
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'sending'
