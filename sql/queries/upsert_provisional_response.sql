-- The score clicked in the email, as the survey page's script posts it: written while the wave is
-- open, when the link's probe was not fetched since :probe_since, and, over an earlier answer, only
-- when that answer is still provisional and had another score (a sent answer is never downgraded).
-- A provisional answer stays one revision (record_response_revision follows it).
INSERT INTO responses (wave_id, contact_id, score, comment, pillar_answers, answered_at, updated_at, revision, completed)
SELECT :wave_id, :contact_id, :score, NULL, '{}', :now, :now, 1, FALSE
FROM waves
WHERE wave_id = :wave_id AND status = 'open' AND close_at > :now
  AND NOT EXISTS (
      SELECT 1 FROM survey_link_probes p
      WHERE p.wave_id = :wave_id AND p.contact_id = :contact_id AND p.probed_at > :probe_since
  )
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    score = excluded.score,
    updated_at = excluded.updated_at
WHERE responses.completed = FALSE AND responses.score <> excluded.score
