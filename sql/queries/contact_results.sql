-- One row per contact of a wave's audience, for BI: invited, answered (a response not set aside by
-- the responses check), score and NPS band, the follow-up and its state, whether anyone at the
-- account answered, and the churn signal: high for a detractor (0-6) unless its follow-up closed
-- with the customer recovered (then medium), medium for a passive, low for a promoter, unknown
-- without an answer. Read as a stream (`contact_results.write_csv`), ordered by contact.
SELECT
    a.contact_id, a.account_id, acc.name AS account_name, acc.tier AS account_tier, acc.vip,
    a.locale,
    CASE WHEN inv.status = 'sent' THEN 1 ELSE 0 END AS invited,
    CASE WHEN r.contact_id IS NULL THEN 0 ELSE 1 END AS answered,
    r.score,
    CASE
        WHEN r.contact_id IS NULL THEN NULL
        WHEN r.score >= 9 THEN 'promoter'
        WHEN r.score >= 7 THEN 'passive'
        ELSE 'detractor'
    END AS band,
    r.pillar_answers, r.answered_at,
    f.owner_type AS followup_owner_type, f.owner AS followup_owner, f.status AS followup_status,
    f.recovered AS followup_recovered, f.closed_at AS followup_closed_at,
    CASE WHEN COALESCE(accounts_answered.answered, 0) = 0 THEN 1 ELSE 0 END AS account_silent,
    CASE
        WHEN r.contact_id IS NULL THEN 'unknown'
        WHEN r.score <= 6 AND f.status = 'closed' AND f.recovered THEN 'medium'
        WHEN r.score <= 6 THEN 'high'
        WHEN r.score <= 8 THEN 'medium'
        ELSE 'low'
    END AS churn_signal
FROM wave_audience a
JOIN accounts acc ON acc.account_id = a.account_id
LEFT JOIN outbox inv ON inv.wave_id = a.wave_id AND inv.kind = 'invitation' AND inv.recipient = a.contact_id
LEFT JOIN responses r
    ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
LEFT JOIN followups f ON f.wave_id = a.wave_id AND f.contact_id = a.contact_id
LEFT JOIN (
    SELECT a2.account_id, COUNT(*) AS answered
    FROM wave_audience a2
    JOIN responses r2 ON r2.wave_id = a2.wave_id AND r2.contact_id = a2.contact_id
    WHERE a2.wave_id = :wave_id AND a2.included AND r2.quarantine_reason IS NULL
    GROUP BY a2.account_id
) accounts_answered ON accounts_answered.account_id = a.account_id
WHERE a.wave_id = :wave_id AND a.included
ORDER BY a.contact_id
