INSERT INTO sales_decisions (wave_id, contact_id, decision, source, row_number, read_at)
VALUES (:wave_id, :contact_id, :decision, :source, :row_number, :now)
ON CONFLICT (wave_id, contact_id) DO UPDATE SET
    decision = excluded.decision,
    source = excluded.source,
    row_number = excluded.row_number,
    read_at = excluded.read_at
