-- Responses of open waves that still need real-time work: no score-band email settled yet (sent,
-- suppressed or failed), or a real-time message still pending a retry. Answers given by :cutoff
-- only, so every response handled was first checked. One wave when :wave_id is given, also once
-- closed (its close handles what the real-time runs had no time for).
SELECT
    r.wave_id, r.contact_id, c.name AS contact_name, c.email, c.locale, c.role,
    r.score, r.comment, r.pillar_answers, r.answered_at, r.updated_at,
    acc.account_id, acc.name AS account_name, acc.tier, acc.country, acc.arr,
    acc.sales_owner, acc.csm, acc.vip
FROM responses r
JOIN waves w ON w.wave_id = r.wave_id
JOIN contacts c ON c.contact_id = r.contact_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE (w.status = 'open' OR r.wave_id = :wave_id)
  AND (:wave_id IS NULL OR r.wave_id = :wave_id)
  AND r.quarantine_reason IS NULL
  AND r.updated_at <= :cutoff
  AND (
      NOT EXISTS (
          SELECT 1 FROM outbox o
          WHERE o.wave_id = r.wave_id AND o.recipient = r.contact_id
            AND o.kind IN ('followup_promoter', 'followup_passive', 'followup_detractor', 'followup_critical')
            AND o.status <> 'pending'
      )
      OR EXISTS (
          SELECT 1 FROM outbox o
          WHERE o.wave_id = r.wave_id AND o.recipient = r.contact_id AND o.kind IN :kinds AND o.status = 'pending'
      )
  )
ORDER BY r.wave_id, r.answered_at, r.contact_id
