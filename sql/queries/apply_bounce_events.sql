-- A late bounce suppresses every later message to the address, whichever contact holds it.
UPDATE contacts
SET bounced_at = :now
WHERE bounced_at IS NULL
  AND LOWER(email) IN (
      SELECT LOWER(address) FROM delivery_events WHERE applied_at IS NULL AND event = 'bounce'
  )
