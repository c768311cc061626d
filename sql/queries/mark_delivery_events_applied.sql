UPDATE delivery_events SET applied_at = :now WHERE applied_at IS NULL
