-- Whether a contact gave a response that counts to a wave.
SELECT COUNT(*) AS n FROM responses WHERE wave_id = :wave_id AND contact_id = :contact_id AND quarantine_reason IS NULL
