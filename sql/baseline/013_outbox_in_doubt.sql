-- Who is sending a row and since when, so a send interrupted by a crash is told apart from one in
-- progress in another task: a row is 'sending' for one message's SMTP transaction only, and a row
-- whose sender died is 'in_doubt' (held for a person) or resent, per the mailing's policy. `doubts`
-- counts the times a row was found interrupted: a resent row with doubts > 0 may have arrived twice.
ALTER TABLE outbox ADD COLUMN claimed_by VARCHAR(500);
ALTER TABLE outbox ADD COLUMN claimed_at TIMESTAMP;
ALTER TABLE outbox ADD COLUMN doubts INTEGER NOT NULL DEFAULT 0;
