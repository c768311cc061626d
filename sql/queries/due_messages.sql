-- The next page of pending messages of a kind (of one chunk, when given) due by :due, after
-- recipient :after in recipient order (keyset paging: each page is one indexed range read).
SELECT recipient
FROM outbox
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'
  AND (next_attempt_at IS NULL OR next_attempt_at <= :due) AND recipient > :after
ORDER BY recipient
LIMIT :limit
