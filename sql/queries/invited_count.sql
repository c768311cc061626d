SELECT COUNT(*) AS n FROM outbox WHERE wave_id = :wave_id AND kind = 'invitation' AND status = 'sent'
