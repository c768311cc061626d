-- The comments of a wave's responses that count which have no classification kept for their
-- current revision by :classifier (see comment_parts), with what classifying reads; `kept` says
-- whether parts of an earlier classification are there (to drop those the new one has not).
SELECT
    r.contact_id, r.revision, r.score, r.comment, c.locale,
    CASE WHEN EXISTS (
        SELECT 1 FROM comment_parts k WHERE k.wave_id = r.wave_id AND k.contact_id = r.contact_id
    ) THEN 1 ELSE 0 END AS kept
FROM responses r
JOIN contacts c ON c.contact_id = r.contact_id
WHERE r.wave_id = :wave_id AND r.quarantine_reason IS NULL AND r.comment IS NOT NULL
    AND NOT EXISTS (
        SELECT 1 FROM comment_parts p
        WHERE p.wave_id = r.wave_id AND p.contact_id = r.contact_id AND p.part = 0
            AND p.revision = r.revision AND p.classifier = :classifier
    )
