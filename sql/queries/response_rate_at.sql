-- A wave's response rate at :cutoff: of the contacts whose invitation was sent, how many had first
-- answered by then (responses set aside by the responses check are not answers).
SELECT COUNT(*) AS invited, COUNT(r.contact_id) AS answered
FROM outbox o
LEFT JOIN responses r
    ON r.wave_id = o.wave_id AND r.contact_id = o.recipient
    AND r.quarantine_reason IS NULL AND r.answered_at <= :cutoff
WHERE o.wave_id = :wave_id AND o.kind = 'invitation' AND o.status = 'sent'
