-- Keep the revision just written to `responses` (same transaction as the upsert).
INSERT INTO response_history (wave_id, contact_id, revision, score, comment, pillar_answers, submitted_at)
SELECT wave_id, contact_id, revision, score, comment, pillar_answers, updated_at
FROM responses
WHERE wave_id = :wave_id AND contact_id = :contact_id
