-- Claim one alert event before sending it; no row affected means it was claimed (sent) already.
INSERT INTO alerts (kind, scope, subject, attempt, wave_id, status, created_at)
VALUES (:kind, :scope, :subject, :attempt, :wave_id, 'claimed', :now)
ON CONFLICT (kind, scope, subject, attempt) DO NOTHING
