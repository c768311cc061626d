-- The score-band email each respondent already has in the ledger (sent in real time or earlier).
SELECT recipient AS contact_id, kind FROM outbox WHERE wave_id = :wave_id AND kind IN :kinds
