-- The person and account names of a wave's audience: a quote must not reveal any of them.
SELECT DISTINCT a.name FROM wave_audience a WHERE a.wave_id = :wave_id
UNION
SELECT DISTINCT acc.name FROM wave_audience a JOIN accounts acc ON acc.account_id = a.account_id WHERE a.wave_id = :wave_id
