-- A wave's classified comment parts that count (the response not set aside, classified at its
-- current revision by :classifier): who said what kind about which theme, without the text.
SELECT p.contact_id, p.part, r.score, p.kind, p.theme
FROM comment_parts p
JOIN responses r ON r.wave_id = p.wave_id AND r.contact_id = p.contact_id
WHERE p.wave_id = :wave_id AND p.classifier = :classifier AND p.revision = r.revision
    AND p.kind IS NOT NULL AND r.quarantine_reason IS NULL
