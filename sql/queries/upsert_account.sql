INSERT INTO accounts (account_id, name, country, tier, sales_owner, csm, vip, updated_at)
VALUES (:account_id, :name, :country, :tier, :sales_owner, :csm, :vip, :updated_at)
ON CONFLICT (account_id) DO UPDATE SET
    name = excluded.name,
    country = excluded.country,
    tier = excluded.tier,
    sales_owner = excluded.sales_owner,
    csm = excluded.csm,
    vip = excluded.vip,
    updated_at = excluded.updated_at
