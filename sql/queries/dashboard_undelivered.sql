-- A wave's messages that failed or are in doubt (a send cut by a crash), per mailing (kind).
SELECT kind, recipient, channel, address, status, attempts, last_error, message_id, created_at, sent_at
FROM outbox
WHERE wave_id = :wave_id AND status IN ('failed', 'in_doubt')
ORDER BY kind, status, recipient
