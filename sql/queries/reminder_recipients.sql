-- Contacts whose invitation was sent and who have not answered yet, plus those already
-- reminded (so a re-run after someone answered still accounts for every reminder row).
SELECT a.contact_id, a.email, a.name, a.locale
FROM wave_audience a
JOIN outbox o ON o.wave_id = a.wave_id AND o.kind = 'invitation' AND o.recipient = a.contact_id AND o.status = 'sent'
LEFT JOIN responses r ON r.wave_id = a.wave_id AND r.contact_id = a.contact_id
WHERE a.wave_id = :wave_id AND a.included
  AND (r.contact_id IS NULL OR EXISTS (
      SELECT 1 FROM outbox rm
      WHERE rm.wave_id = a.wave_id AND rm.kind = 'reminder' AND rm.recipient = a.contact_id
  ))
ORDER BY a.contact_id
