-- The call log of one follow-up, oldest first.
SELECT revision, event_at, actor, source, action, outcome, from_status, to_status, note
FROM followup_events
WHERE wave_id = :wave_id AND contact_id = :contact_id
ORDER BY revision
