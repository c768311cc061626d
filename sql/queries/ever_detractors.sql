-- Contacts of a wave whose answer was a detractor's at some revision (a real-time follow-up may
-- have been opened for an answer changed since).
SELECT DISTINCT contact_id FROM response_history WHERE wave_id = :wave_id AND score <= :detractor_max
