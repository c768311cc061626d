-- A wave's responses that count (none set aside), counted per score and stored pillar answers:
-- its figures are computed from a few hundred rows, not one per response.
SELECT score, pillar_answers, COUNT(*) AS n
FROM responses
WHERE wave_id = :wave_id AND quarantine_reason IS NULL
GROUP BY score, pillar_answers
