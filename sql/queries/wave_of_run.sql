-- The wave an Airflow DAG run runs (set by plan_wave).
SELECT wave_id FROM waves WHERE dag_id = :dag_id AND run_id = :run_id
