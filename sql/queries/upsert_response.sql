-- Writes only while the wave is open and before its close time (even if the close task is late);
-- answered_at keeps the first submission's time, revision counts the submissions. A sent form
-- completes a provisional answer (the score clicked in the email), as the same revision.
INSERT INTO responses (wave_id, contact_id, score, comment, pillar_answers, answered_at, updated_at, revision, completed)
SELECT :wave_id, :contact_id, :score, :comment, :pillar_answers, :now, :now, 1, TRUE
FROM waves
WHERE wave_id = :wave_id AND status = 'open' AND close_at > :now
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    score = excluded.score,
    comment = excluded.comment,
    pillar_answers = excluded.pillar_answers,
    updated_at = excluded.updated_at,
    revision = CASE WHEN responses.completed THEN responses.revision + 1 ELSE responses.revision END,
    completed = TRUE
