-- Every response of a wave as the responses check reads it at the close (those set aside before
-- too: the check judges each again), its reason if it is set aside now, the comment's length in
-- characters (not the comment), and whether an invitation was sent to the respondent: an
-- anti-join against the ledger, so no list of the invited leaves the database.
SELECT
    r.contact_id, r.score, LENGTH(r.comment) AS comment_length, r.pillar_answers, r.answered_at,
    r.quarantine_reason,
    CASE WHEN o.recipient IS NULL THEN 0 ELSE 1 END AS invited
FROM responses r
LEFT JOIN outbox o
    ON o.wave_id = r.wave_id AND o.kind = 'invitation' AND o.recipient = r.contact_id AND o.status = 'sent'
WHERE r.wave_id = :wave_id
