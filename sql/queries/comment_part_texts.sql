-- The classified comment parts of some respondents of a wave in full, as a report shows them.
SELECT
    p.contact_id, p.part, p.text AS comment, p.kind, p.theme, p.matched,
    r.score, c.locale, acc.name AS account_name
FROM comment_parts p
JOIN responses r ON r.wave_id = p.wave_id AND r.contact_id = p.contact_id
JOIN contacts c ON c.contact_id = p.contact_id
LEFT JOIN accounts acc ON acc.account_id = c.account_id
WHERE p.wave_id = :wave_id AND p.classifier = :classifier AND p.revision = r.revision
    AND p.contact_id IN :contact_ids
