-- A new response the real-time check rejected: left out of alerts, emails and figures, with why.
-- The responses check at the wave's close judges every response again.
UPDATE responses
SET quarantine_reason = :reason
WHERE wave_id = :wave_id AND contact_id = :contact_id AND quarantine_reason IS NULL
