-- A message refused transiently (a 4yz reply, a lost session) stays pending and waits for its own
-- retry time, like a mail server's deferred queue: the claim skips it until then. NULL: due now.
ALTER TABLE outbox ADD COLUMN next_attempt_at TIMESTAMP;
