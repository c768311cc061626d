-- The wave and contact a survey link names, if that contact is in the wave's audience,
-- with the times the survey pages show (close, flash results) and what gives the reader's zone.
SELECT w.wave_id, w.name AS wave_name, w.status, w.params, w.close_at, m.due_at AS flash_at, a.name, a.locale,
    c.timezone, acc.country AS account_country, w.country AS wave_country
FROM wave_audience a
JOIN waves w ON w.wave_id = a.wave_id
JOIN contacts c ON c.contact_id = a.contact_id
LEFT JOIN accounts acc ON acc.account_id = a.account_id
LEFT JOIN wave_milestones m ON m.wave_id = w.wave_id AND m.milestone = 'flash'
WHERE a.wave_id = :wave_id AND a.contact_id = :contact_id AND a.included
