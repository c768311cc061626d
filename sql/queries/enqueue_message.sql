INSERT INTO outbox (wave_id, kind, recipient, channel, address, created_at)
VALUES (:wave_id, :kind, :recipient, :channel, :address, :created_at)
ON CONFLICT (wave_id, kind, recipient) DO NOTHING
