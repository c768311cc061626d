-- NPS database, version 6: the wave planner's ledger (dags/nps_planner.py), one row per wave of
-- the wave calendar that the planner starts. The row is claimed before the nps_wave run is
-- triggered and confirmed (started_at) once Airflow has the run. The run id is the wave's own
-- (wave__<wave_id>), so a claimed start whose confirmation was lost is triggered again without
-- any risk of a second run. No foreign key to waves: the wave is planned by the run, later.

CREATE TABLE wave_starts (
    wave_id         VARCHAR(128) PRIMARY KEY,
    run_id          VARCHAR(250) NOT NULL UNIQUE,
    calendar_file   VARCHAR(500) NOT NULL,
    wave_index      INTEGER NOT NULL,
    conf            TEXT NOT NULL,
    planner_run_id  VARCHAR(250),
    claimed_at      TIMESTAMP NOT NULL,
    started_at      TIMESTAMP
);
