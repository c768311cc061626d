-- A wave's classified comment parts of one kind that count, in full, lowest score first: what the
-- retrospective's report file lists.
SELECT r.score, acc.name AS account_name, p.theme, p.text AS comment
FROM comment_parts p
JOIN responses r ON r.wave_id = p.wave_id AND r.contact_id = p.contact_id
JOIN contacts c ON c.contact_id = p.contact_id
LEFT JOIN accounts acc ON acc.account_id = c.account_id
WHERE p.wave_id = :wave_id AND p.classifier = :classifier AND p.kind = :kind
    AND p.revision = r.revision AND r.quarantine_reason IS NULL
ORDER BY r.score, p.contact_id, p.part
