-- A wave's audience snapshot joined with the account and the contact's current consent.
SELECT
    a.contact_id, a.account_id, a.email, a.name, a.locale, a.included, a.exclusion_reason,
    acc.name AS account_name, acc.tier, acc.sales_owner, acc.csm, acc.vip,
    c.role, c.opted_out_at, c.bounced_at
FROM wave_audience a
JOIN accounts acc ON acc.account_id = a.account_id
JOIN contacts c ON c.contact_id = a.contact_id
WHERE a.wave_id = :wave_id
ORDER BY a.contact_id
