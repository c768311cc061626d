"""Every DAG imports cleanly, cheaply, and follows the project's rules."""

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from include.nps.storage import PROJECT_ROOT

DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY_MODULES = ("pandas", "great_expectations", "include.nps.pipeline", "openpyxl", "requests")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {dag_id for dag_id in dagbag.dag_ids} == {p.stem for p in DAG_FILES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_nothing_heavy(path: Path):
    code = (
        "import sys, time, runpy; t = time.perf_counter(); runpy.run_path(sys.argv[1]); "
        "print(f'{time.perf_counter() - t:.2f}|' + ','.join(m for m in sys.argv[2:] if m in sys.modules))"
    )
    command = [sys.executable, "-c", code, str(path), *HEAVY_MODULES]
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    seconds, heavy = out.stdout.strip().splitlines()[-1].split("|")
    print(f"{path.name} parsed in {seconds} s")
    assert heavy == "", f"{path.name} imports {heavy} at parse time"


def test_dags_follow_the_policy(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and "#### Owner" in dag.doc_md, dag_id
        assert dag.tags, dag_id
        assert dag.catchup is False, dag_id
        assert dag.start_date is not None, dag_id
        for task in dag.tasks:
            assert task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1 or task.task_id.startswith("wait_for_"), f"{dag_id}.{task.task_id}"


def test_every_param_has_a_title_and_a_description(dagbag):
    for dag in dagbag.dags.values():
        for name in dag.params:
            schema = dag.params.get_param(name).schema
            description = dag.params.get_param(name).description or schema.get("description")
            assert schema.get("title") and description, f"{dag.dag_id} param {name}"


def test_the_wave_runs_its_steps_in_order(dagbag):
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

    dag = dagbag.dags["nps_wave"]
    mailing = ["prepare", "send", "check"]
    order = [
        "plan_wave", "build_audience", "wait_for_preannounce",
        *[f"send_preannouncement.{t}" for t in mailing], "wait_for_open",
        *[f"send_invitations.{t}" for t in mailing], "wait_for_reminder",
        *[f"send_reminders.{t}" for t in mailing], "wait_for_midwave", "share_midwave_drop",
        "wait_for_close", "close_wave", "share_postwave_drop", "route_detractors", "send_followups",
        "wait_for_flash", *[f"send_flash_results.{t}" for t in mailing], "wait_for_retrospective",
        "run_retrospective",
    ]  # fmt: skip
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} -> {downstream}"
    waits = [dag.get_task(t) for t in order if t.startswith("wait_for_")]
    sends = [dag.get_task(t) for t in order if t.endswith(".send")]
    assert len(sends) == 4 and all(s.is_mapped for s in sends), "wave-wide emails fan out over chunks"
    assert all(isinstance(w, DateTimeSensorAsync) for w in waits), "waits must defer, not hold a worker"
