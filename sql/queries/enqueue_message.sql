-- A re-run adds only new recipients; a row keeps the chunk (mapped send task) it was first given.
INSERT INTO outbox (wave_id, kind, recipient, channel, chunk, address, created_at)
VALUES (:wave_id, :kind, :recipient, :channel, :chunk, :address, :created_at)
ON CONFLICT (wave_id, kind, recipient) DO NOTHING
