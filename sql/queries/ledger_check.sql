-- One kind's ledger rows for its data check, with whether it was delivered (1 sent, 0 failed or in
-- doubt, NULL suppressed or unsettled) and whether a message went to a contact who had opted out or
-- bounced before it was sent (internal recipients are not contacts: never).
SELECT
    o.recipient, o.status, o.sent_at,
    CASE WHEN o.status = 'sent' THEN 1 WHEN o.status IN ('failed', 'in_doubt') THEN 0 END AS delivered,
    CASE
        WHEN o.status = 'sent' AND (c.opted_out_at < o.sent_at OR c.bounced_at < o.sent_at) THEN 1
        ELSE 0
    END AS sent_to_suppressed
FROM outbox o
LEFT JOIN contacts c ON c.contact_id = o.recipient
WHERE o.wave_id = :wave_id AND o.kind = :kind
ORDER BY o.recipient
