-- How many of a wave's responses that count were first given in each minute (UTC, as stored):
-- the answers by hour of day, in any time zone, without a row per response.
SELECT SUBSTR(CAST(answered_at AS VARCHAR(40)), 1, 16) AS minute, COUNT(*) AS n
FROM responses
WHERE wave_id = :wave_id AND quarantine_reason IS NULL
GROUP BY SUBSTR(CAST(answered_at AS VARCHAR(40)), 1, 16)
