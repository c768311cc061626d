-- Keep the revision just written to `responses` (same transaction as the upsert). A provisional
-- answer is one revision until it is sent: its row here follows it (a new score, then the form).
INSERT INTO response_history (wave_id, contact_id, revision, score, comment, pillar_answers, submitted_at)
SELECT wave_id, contact_id, revision, score, comment, pillar_answers, updated_at
FROM responses
WHERE wave_id = :wave_id AND contact_id = :contact_id
ON CONFLICT (wave_id, contact_id, revision) DO UPDATE SET
    score = excluded.score,
    comment = excluded.comment,
    pillar_answers = excluded.pillar_answers,
    submitted_at = excluded.submitted_at
