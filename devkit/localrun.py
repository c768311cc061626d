"""Run `nps_wave` in this process with `dag.test()`, against local servers: the demo and the
end-to-end tests share this. Airflow's settings must be in the environment before the first
`import airflow`, so `configure_airflow` comes first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from include.nps.core.storage import PROJECT_ROOT


def configure_airflow(airflow_home: Path) -> None:
    """Point Airflow at this project's DAGs and a SQLite metadata DB under `airflow_home`."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
            "GX_ANALYTICS_ENABLED": "False",
        }
    )
    pythonpath = os.environ.get("PYTHONPATH", "")
    if str(PROJECT_ROOT) not in pythonpath.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), pythonpath) if p)


def migrate_airflow_db() -> None:
    """Create or upgrade the Airflow metadata DB (a separate process, as the CLI does it)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def load_dag(dag_id: str = "nps_wave") -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_wave(conf: dict[str, Any]) -> Any:
    """Run one whole wave under `dag.test()`; return the DagRun. The run's deadline alert is left
    out: in Airflow 3.3.2 `dag.test()` fails when a run of a DAG with a deadline succeeds
    (apache/airflow#73428); the scheduler, which evaluates deadlines, is not part of `dag.test()`."""
    dag = load_dag()
    dag.deadline = None
    return dag.test(run_conf=conf)
