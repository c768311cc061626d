-- A decision read from a returned drop file. It replaces an earlier file's, or the default that
-- stood when a decision task in Airflow timed out, never a person's answer in Airflow.
INSERT INTO sales_decisions (wave_id, contact_id, decision, source, row_number, read_at)
VALUES (:wave_id, :contact_id, :decision, :source, :row_number, :now)
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    decision = excluded.decision,
    source = excluded.source,
    row_number = excluded.row_number,
    read_at = excluded.read_at
WHERE sales_decisions.source NOT LIKE 'airflow:%' OR sales_decisions.source = 'airflow:default'
