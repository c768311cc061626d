-- What the routing rules look at besides the response: the account's ARR and country, and
-- whether the account already has another open follow-up (of any wave).
SELECT
    r.contact_id, acc.arr, acc.country,
    CASE WHEN EXISTS (
        SELECT 1 FROM followups f
        WHERE f.account_id = acc.account_id AND f.status = 'open'
          AND NOT (f.wave_id = r.wave_id AND f.contact_id = r.contact_id)
    ) THEN 1 ELSE 0 END AS has_open_followup
FROM responses r
JOIN contacts c ON c.contact_id = r.contact_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE r.wave_id = :wave_id
