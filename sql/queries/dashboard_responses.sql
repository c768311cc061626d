-- Responses that count (none set aside by a data check), split into the three NPS groups, and how
-- many of them were completed (sent, not only the score clicked in the email).
SELECT wave_id,
       COUNT(*) AS responses,
       SUM(CASE WHEN score >= 9 THEN 1 ELSE 0 END) AS promoters,
       SUM(CASE WHEN score BETWEEN 7 AND 8 THEN 1 ELSE 0 END) AS passives,
       SUM(CASE WHEN score <= 6 THEN 1 ELSE 0 END) AS detractors,
       SUM(CASE WHEN completed THEN 1 ELSE 0 END) AS completed
FROM responses
WHERE quarantine_reason IS NULL
  AND wave_id IN :wave_ids
GROUP BY wave_id
