-- Opt-out and bounce are never reset by a new extract: they are owned by this database.
INSERT INTO contacts (contact_id, account_id, email, name, role, locale, timezone, updated_at)
VALUES (:contact_id, :account_id, :email, :name, :role, :locale, :timezone, :updated_at)
ON CONFLICT (contact_id) DO UPDATE SET
    account_id = excluded.account_id,
    email = excluded.email,
    name = excluded.name,
    role = excluded.role,
    locale = excluded.locale,
    timezone = excluded.timezone,
    updated_at = excluded.updated_at
