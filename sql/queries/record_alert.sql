-- The outcome of a claimed alert: where it went, what it said, what failed.
UPDATE alerts
SET status = :status, channels = :channels, message = :message, error = :error, sent_at = :now
WHERE kind = :kind AND scope = :scope AND subject = :subject AND attempt = :attempt
