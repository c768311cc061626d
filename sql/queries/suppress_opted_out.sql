-- Consent is checked at send time: an opt-out or bounce recorded after the audience
-- snapshot still stops every later message to that contact.
UPDATE outbox
SET status = 'suppressed',
    last_error = CASE
        WHEN (SELECT c.opted_out_at FROM contacts c WHERE c.contact_id = outbox.recipient) IS NOT NULL
        THEN 'opted out' ELSE 'bounced' END
WHERE wave_id = :wave_id AND kind = :kind AND (:chunk IS NULL OR chunk = :chunk) AND status = 'pending'
  AND recipient IN (
      SELECT contact_id FROM contacts WHERE opted_out_at IS NOT NULL OR bounced_at IS NOT NULL
  )
