-- What every reader's flash-results email shares, computed once per mailing (a re-run of the
-- mailing's preparation computes it again).
INSERT INTO flash_contents (wave_id, content, computed_at) VALUES (:wave_id, :content, :now)
ON CONFLICT (wave_id) DO UPDATE SET content = excluded.content, computed_at = excluded.computed_at
