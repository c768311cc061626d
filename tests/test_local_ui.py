"""`make airflow` shows the demo's wave: the local UI and `make demo` resolve one NPS DB."""

from __future__ import annotations

import os
import subprocess
import sys

from devkit import localui
from devkit.demo import DEMO_HOME

PRINT_DB = "from include.nps.core.connections import db_url; print(db_url())"


def _db_url(env: dict[str, str], before: str = "") -> str:
    code = f"{before}; {PRINT_DB}" if before else PRINT_DB
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)  # noqa: S603
    return done.stdout.strip().splitlines()[-1]


def test_the_local_ui_reads_the_database_the_demo_writes(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NPS_", "AIRFLOW_CONN_"))}
    clean["AIRFLOW_HOME"] = str(tmp_path)  # no connection defined there
    demo = _db_url(clean, "from devkit import demo; demo.use_demo_home()")
    ui = _db_url(localui.environment(clean))
    assert demo == ui == f"sqlite:///{DEMO_HOME / 'nps.db'}"
    assert localui.environment(clean)["NPS_SECRET_KEY"] == localui.LOCAL_SECRET  # the demo's links open locally


def test_an_nps_home_given_still_wins():
    assert localui.environment({"NPS_HOME": "/srv/nps"})["NPS_HOME"] == "/srv/nps"
