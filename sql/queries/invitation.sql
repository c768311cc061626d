-- The wave and contact a survey link names, if that contact is in the wave's audience.
SELECT w.wave_id, w.name AS wave_name, w.status, w.params, a.name, a.locale
FROM wave_audience a
JOIN waves w ON w.wave_id = a.wave_id
WHERE a.wave_id = :wave_id AND a.contact_id = :contact_id AND a.included
