-- Closed-loop report: the call log up to the end of the month (what was known then).
SELECT wave_id, contact_id, revision, event_at, action, outcome, from_status, to_status
FROM followup_events
WHERE event_at < :end
ORDER BY wave_id, contact_id, revision
