-- Rows :first to :last of the contacts being loaded (the temporary table contacts_staging) whose
-- address another contact holds in the NPS DB (one contact per address there).
SELECT s.row_number, c.contact_id AS holder, s.email
FROM contacts_staging s
JOIN contacts c ON c.email = s.email
WHERE s.row_number BETWEEN :first AND :last AND c.contact_id <> s.contact_id
