-- A complaint (the email reported as spam) is an opt-out: no later message to the address.
UPDATE contacts
SET opted_out_at = :now
WHERE opted_out_at IS NULL
  AND LOWER(email) IN (
      SELECT LOWER(address) FROM delivery_events WHERE applied_at IS NULL AND event = 'complaint'
  )
