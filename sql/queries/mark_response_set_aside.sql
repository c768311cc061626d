-- The responses check's verdict on one response: the reason it is set aside, or NULL when it counts.
UPDATE responses
SET quarantine_reason = :reason
WHERE wave_id = :wave_id AND contact_id = :contact_id
