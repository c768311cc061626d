-- The survey page's hidden probe of one link was fetched (by a scanner): when, last.
INSERT INTO survey_link_probes (wave_id, contact_id, probed_at)
VALUES (:wave_id, :contact_id, :now)
ON CONFLICT (wave_id, contact_id) DO UPDATE SET probed_at = excluded.probed_at
