-- A wave's audience snapshot joined with the account and the contact's current consent
-- (which may have changed since the snapshot was taken).
SELECT
    a.contact_id, a.account_id, a.email, a.name, a.locale, a.included, a.exclusion_reason,
    acc.name AS account_name, acc.tier, acc.sales_owner, acc.csm, acc.vip,
    c.role, c.opted_out_at, c.bounced_at, a.snapshot_at,
    CASE WHEN c.opted_out_at <= a.snapshot_at THEN 1 ELSE 0 END AS opted_out_before_snapshot,
    CASE WHEN c.bounced_at <= a.snapshot_at THEN 1 ELSE 0 END AS bounced_before_snapshot
FROM wave_audience a
LEFT JOIN accounts acc ON acc.account_id = a.account_id
JOIN contacts c ON c.contact_id = a.contact_id
WHERE a.wave_id = :wave_id
ORDER BY a.contact_id
