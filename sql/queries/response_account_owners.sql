-- The salesperson of record of each respondent's account, read apart from the drop's sheet.
SELECT r.contact_id, acc.sales_owner
FROM responses r
JOIN contacts c ON c.contact_id = r.contact_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE r.wave_id = :wave_id
