-- The accounts of the contacts being loaded (the temporary table contacts_staging), each as its
-- first row in the file gives it.
INSERT INTO accounts (account_id, name, country, tier, sales_owner, csm, vip, updated_at)
SELECT s.account_id, s.account_name, s.country, s.tier, s.sales_owner, s.csm, s.vip, :now
FROM contacts_staging s
WHERE s.row_number IN (SELECT MIN(row_number) FROM contacts_staging GROUP BY account_id)
ON CONFLICT (account_id) DO UPDATE SET
    name = excluded.name,
    country = excluded.country,
    tier = excluded.tier,
    sales_owner = excluded.sales_owner,
    csm = excluded.csm,
    vip = excluded.vip,
    updated_at = excluded.updated_at
