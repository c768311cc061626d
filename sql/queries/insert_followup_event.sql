-- One row of a follow-up's call log, keyed by the revision the change produced.
INSERT INTO followup_events
    (wave_id, contact_id, revision, event_at, actor, source, action, outcome, from_status, to_status, note)
VALUES
    (:wave_id, :contact_id, :revision, :event_at, :actor, :source, :action, :outcome, :from_status, :to_status, :note)
