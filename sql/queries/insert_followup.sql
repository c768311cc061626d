INSERT INTO followups (wave_id, contact_id, account_id, score, owner_type, owner, created_at)
VALUES (:wave_id, :contact_id, :account_id, :score, :owner_type, :owner, :now)
ON CONFLICT (wave_id, contact_id) DO NOTHING
