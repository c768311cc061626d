-- Per account of a wave's invited contacts (invitation sent): its region and tier, contacts
-- invited, responses (none set aside), promoters, detractors and the sum of their scores. The
-- retrospective's account list, account coverage, account-level NPS and region and tier segments.
-- Counted per account first, then joined to the accounts: one look-up per account, not per contact.
SELECT
    counted.account_id, acc.name AS account_name, acc.csm, acc.sales_owner, acc.vip,
    COALESCE(acc.country, '?') AS region, COALESCE(acc.tier, '?') AS tier,
    counted.invited, counted.responses, counted.promoters, counted.detractors, counted.score_sum
FROM (
    SELECT
        a.account_id,
        COUNT(*) AS invited,
        COUNT(r.score) AS responses,
        SUM(CASE WHEN r.score >= 9 THEN 1 ELSE 0 END) AS promoters,
        SUM(CASE WHEN r.score <= 6 THEN 1 ELSE 0 END) AS detractors,
        COALESCE(SUM(r.score), 0) AS score_sum
    FROM wave_audience a
    JOIN outbox o
        ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
    LEFT JOIN responses r
        ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id AND r.quarantine_reason IS NULL
    WHERE a.wave_id = :wave_id
    GROUP BY a.account_id
) counted
LEFT JOIN accounts acc ON acc.account_id = counted.account_id
