-- The first :limit promoter (9-10) comments of each locale among a wave's responses that count,
-- in the order the flash results choose quotes (highest score, earliest answer first), with each
-- one's place in its locale and how many its locale has.
SELECT contact_id, score, comment, locale, answered_at, place, written
FROM (
    SELECT
        r.contact_id, r.score, r.comment, c.locale, r.answered_at,
        ROW_NUMBER() OVER (PARTITION BY c.locale ORDER BY r.score DESC, r.answered_at, r.contact_id) AS place,
        COUNT(*) OVER (PARTITION BY c.locale) AS written
    FROM responses r
    JOIN contacts c ON c.contact_id = r.contact_id
    WHERE r.wave_id = :wave_id AND r.quarantine_reason IS NULL AND r.score >= 9
        AND r.comment IS NOT NULL AND TRIM(r.comment) <> ''
) ranked
WHERE place <= :limit
ORDER BY answered_at, contact_id
