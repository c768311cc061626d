-- The contacts a wave-wide email (pre-announcement, invitation, flash results) goes to.
SELECT a.contact_id, a.email, a.name, a.locale
FROM wave_audience a
WHERE a.wave_id = :wave_id AND a.included
ORDER BY a.contact_id
