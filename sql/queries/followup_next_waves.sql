-- Each followed-up detractor and their answer at the program's next wave (the first wave of the
-- same program closing after theirs), for next waves closed before :end. next_score is NULL when
-- they did not answer it (responses set aside by the responses check do not count).
SELECT f.wave_id, f.contact_id, f.score, f.status, f.recovered, w.name AS wave_name,
       nw.wave_id AS next_wave_id, nw.name AS next_wave_name, nw.close_at AS next_close_at,
       r.score AS next_score, c.name AS contact_name, acc.name AS account_name
FROM followups f
JOIN waves w ON w.wave_id = f.wave_id
JOIN waves nw ON nw.wave_id = (
    SELECT n.wave_id FROM waves n
    WHERE n.program = w.program AND n.close_at > w.close_at
    ORDER BY n.close_at, n.wave_id
    LIMIT 1
)
JOIN contacts c ON c.contact_id = f.contact_id
LEFT JOIN accounts acc ON acc.account_id = f.account_id
LEFT JOIN responses r ON r.wave_id = nw.wave_id AND r.contact_id = f.contact_id AND r.quarantine_reason IS NULL
WHERE nw.status IN ('closed', 'done') AND nw.close_at < :end
  AND (:contact_id = '' OR (f.wave_id = :wave_id AND f.contact_id = :contact_id))
ORDER BY nw.close_at, f.wave_id, f.contact_id
