-- The flash-results recipients of the ledger chunk that holds :contact_id, and whether each
-- answered (a response that counts): what a send task looks up once per chunk.
SELECT o.recipient AS contact_id, CASE WHEN r.contact_id IS NULL THEN 0 ELSE 1 END AS responded
FROM outbox o
LEFT JOIN responses r ON r.wave_id = o.wave_id AND r.contact_id = o.recipient AND r.quarantine_reason IS NULL
WHERE o.wave_id = :wave_id AND o.kind = 'flash_results'
    AND o.chunk = (
        SELECT chunk FROM outbox WHERE wave_id = :wave_id AND kind = 'flash_results' AND recipient = :contact_id
    )
