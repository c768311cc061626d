-- The contacts being loaded (the temporary table contacts_staging), in one statement.
-- Opt-out and bounce are never reset by a new extract: they are owned by this database.
-- (WHERE true: SQLite would read ON CONFLICT as part of the SELECT's join without a WHERE.)
INSERT INTO contacts (contact_id, account_id, email, name, role, locale, timezone, updated_at)
SELECT s.contact_id, s.account_id, s.email, s.name, s.role, s.locale, s.timezone, :now
FROM contacts_staging s
WHERE true
ON CONFLICT (contact_id) DO UPDATE SET
    account_id = excluded.account_id,
    email = excluded.email,
    name = excluded.name,
    role = excluded.role,
    locale = excluded.locale,
    timezone = excluded.timezone,
    updated_at = excluded.updated_at
