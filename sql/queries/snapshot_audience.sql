-- One contact into a wave's audience, with the first exclusion rule that applies.
-- "Recently surveyed": invited by another wave that opened after :recent_since.
INSERT INTO wave_audience (wave_id, contact_id, account_id, email, name, locale, included, exclusion_reason, snapshot_at)
SELECT
    :wave_id, c.contact_id, c.account_id, c.email, c.name, c.locale,
    CASE
        WHEN c.opted_out_at IS NOT NULL OR c.bounced_at IS NOT NULL THEN FALSE
        WHEN recent.contact_id IS NOT NULL THEN FALSE
        ELSE TRUE
    END,
    CASE
        WHEN c.opted_out_at IS NOT NULL THEN 'opted_out'
        WHEN c.bounced_at IS NOT NULL THEN 'bounced'
        WHEN recent.contact_id IS NOT NULL THEN 'surveyed_recently'
    END,
    :now
FROM contacts c
LEFT JOIN (
    SELECT DISTINCT o.recipient AS contact_id
    FROM outbox o
    JOIN waves w ON w.wave_id = o.wave_id
    WHERE o.kind = 'invitation' AND o.status = 'sent'
      AND o.wave_id <> :wave_id AND w.open_at > :recent_since
) recent ON recent.contact_id = c.contact_id
WHERE c.contact_id = :contact_id
ON CONFLICT (wave_id, contact_id) DO NOTHING
