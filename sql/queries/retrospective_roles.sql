-- Per role of a wave's invited contacts (invitation sent): contacts invited, responses (none set
-- aside), promoters and detractors; and how the survey went for them: bounced or opted out since
-- the invitation, reminded, and answered after the reminder.
SELECT
    COALESCE(c.role, '?') AS role,
    COUNT(*) AS invited,
    COUNT(r.score) AS responses,
    SUM(CASE WHEN r.score >= 9 THEN 1 ELSE 0 END) AS promoters,
    SUM(CASE WHEN r.score <= 6 THEN 1 ELSE 0 END) AS detractors,
    SUM(CASE WHEN c.bounced_at >= o.sent_at THEN 1 ELSE 0 END) AS bounced,
    SUM(CASE WHEN c.opted_out_at >= o.sent_at THEN 1 ELSE 0 END) AS opted_out,
    COUNT(rem.sent_at) AS reminded,
    SUM(CASE WHEN r.answered_at >= rem.sent_at THEN 1 ELSE 0 END) AS answered_after_reminder
FROM wave_audience a
JOIN outbox o ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
JOIN contacts c ON c.contact_id = a.contact_id
LEFT JOIN outbox rem
    ON rem.wave_id = a.wave_id AND rem.kind = 'reminder' AND rem.recipient = a.contact_id AND rem.status = 'sent'
LEFT JOIN responses r
    ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
WHERE a.wave_id = :wave_id
GROUP BY COALESCE(c.role, '?')
