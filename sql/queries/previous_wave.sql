SELECT prev.wave_id
FROM waves cur
JOIN waves prev ON prev.program = cur.program AND prev.wave_id <> cur.wave_id AND prev.close_at < cur.close_at
WHERE cur.wave_id = :wave_id AND prev.status IN ('closed', 'done')
ORDER BY prev.close_at DESC
LIMIT 1
