SELECT wave_id, kind, recipient, channel, address, attempts
FROM outbox
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'
ORDER BY recipient
LIMIT :limit
