-- The holders whose address moves to another contact of the file leave it first, for a
-- placeholder no address matches (no @), unique per contact; their own row gives them a new one.
UPDATE contacts SET email = '~' || contact_id
WHERE contact_id IN (SELECT holder FROM address_moves WHERE NOT refused)
