"""`make airflow`: Airflow standalone over this project, reading the NPS DB the demo wrote.

`make demo` keeps its NPS DB in `var/demo/nps.db` (`demo.DEMO_HOME`) and its runs in Airflow's
metadata DB under `.airflow/`; the local UI uses the same two, so after `make demo` the NPS waves
page shows the demo's wave beside its DAG run. `NPS_HOME` or `NPS_DB_URL` in the environment
point it elsewhere. Tasks triggered from the local UI write to that DB too (the next `make demo`
starts it afresh).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from devkit import demo

SEND_POOL = ("nps_email", "4", "NPS email sends of every wave")


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """`base` with what the local UI needs that it does not set: the demo's NPS home and Airflow
    home, and a development secret for the signed links."""
    env = dict(base)
    env.setdefault("NPS_HOME", str(demo.DEMO_HOME))
    env.setdefault("AIRFLOW_HOME", str(demo.AIRFLOW_HOME))
    env.setdefault("NPS_SECRET_KEY", demo.LOCAL_SECRET)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def main() -> None:
    env = environment(os.environ)
    Path(env["NPS_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    subprocess.run([airflow, "pools", "set", *SEND_POOL], env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    print(f"NPS database: {env.get('NPS_DB_URL') or 'sqlite:///' + str(Path(env['NPS_HOME']) / 'nps.db')}", flush=True)
    os.execve(airflow, [airflow, "standalone"], env)  # noqa: S606


if __name__ == "__main__":
    main()
