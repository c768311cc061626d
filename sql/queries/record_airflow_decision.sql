-- A decision answered in Airflow (source `airflow:<user>`) replaces any other; the default that
-- stood at the decision task's timeout (`airflow:default`) only goes where nothing was decided.
INSERT INTO sales_decisions (wave_id, contact_id, decision, source, row_number, read_at)
VALUES (:wave_id, :contact_id, :decision, :source, 0, :now)
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    decision = excluded.decision,
    source = excluded.source,
    row_number = excluded.row_number,
    read_at = excluded.read_at
WHERE excluded.source <> 'airflow:default' OR sales_decisions.source = 'airflow:default'
