-- The Airflow DAG run that runs each wave, for links from the dashboard and alerts to the run.
ALTER TABLE waves ADD COLUMN dag_id VARCHAR(250);
ALTER TABLE waves ADD COLUMN run_id VARCHAR(250);
