-- A wave-wide email for each recipient of {recipients} (a query giving contact_id and email),
-- numbered into chunks (mapped send tasks) in contact order, in one statement. A re-run adds only
-- who is missing; a row keeps the chunk it was first given.
INSERT INTO outbox (wave_id, kind, recipient, channel, chunk, address, created_at)
SELECT :wave_id, :kind, r.contact_id, 'email', (ROW_NUMBER() OVER (ORDER BY r.contact_id) - 1) / :chunk_size,
       r.email, :created_at
FROM ({recipients}) r
WHERE true
ON CONFLICT (wave_id, kind, recipient) DO NOTHING
