"""Every DAG imports cleanly, cheaply, and follows the project's rules."""

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from include.nps.core.storage import PROJECT_ROOT

DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY_MODULES = (
    "pandas",
    "great_expectations",
    "include.nps.pipeline",
    "openpyxl",
    "requests",
    "airflow.models.dagrun",
)


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


MAILING = ("prepare", "send", "check")
CUSTOMER_TIMELINE = [
    "plan_wave", "build_audience", "wait_for_preannounce",
    *[f"send_preannouncement.{t}" for t in MAILING], "wait_for_open",
    *[f"send_invitations.{t}" for t in MAILING], "wait_for_reminder",
    *[f"send_reminders.{t}" for t in MAILING], "wait_for_close", "close_wave", "approve_flash_results",
    "wait_for_flash",
    *[f"send_flash_results.{t}" for t in MAILING], "wait_for_retrospective", "run_retrospective",
]  # fmt: skip
SIDE_BRANCHES = {  # a step for colleagues: the spine step it hangs off, and its own tasks
    "share_midwave_drop": ("send_invitations.check", ["wait_for_midwave", "share_midwave_drop"]),
    "share_postwave_drop": ("close_wave", ["share_postwave_drop", "sales_decision_requests", "decide_followup_owner"]),
    "route_detractors": ("close_wave", ["route_detractors"]),
    "export_contact_results": ("route_detractors", ["export_contact_results"]),
}


def test_the_wave_runs_its_customer_timeline_in_order(dagbag):
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

    dag = dagbag.dags["nps_wave"]
    side = [task for _, tasks in SIDE_BRANCHES.values() for task in tasks]
    assert sorted(dag.task_ids) == sorted([*CUSTOMER_TIMELINE, "send_followups", *side])
    for upstream, downstream in itertools.pairwise(CUSTOMER_TIMELINE):
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} -> {downstream}"
    followups = dag.get_task("send_followups")
    assert followups.upstream_task_ids == {"close_wave", "route_detractors"}  # success of one: the close
    waits = [dag.get_task(t) for t in dag.task_ids if t.startswith("wait_for_")]
    sends = [dag.get_task(t) for t in CUSTOMER_TIMELINE if t.endswith(".send")]
    assert len(sends) == 4 and all(s.is_mapped for s in sends), "wave-wide emails fan out over chunks"
    assert all(isinstance(w, DateTimeSensorAsync) for w in waits), "waits must defer, not hold a worker"
    decide, approve = dag.get_task("decide_followup_owner"), dag.get_task("approve_flash_results")
    assert decide.is_mapped and approve.template_fields == (), "customer text is never a template"


@pytest.mark.parametrize("branch", sorted(SIDE_BRANCHES))
def test_no_customer_step_waits_for_a_step_for_colleagues(dagbag, branch):
    """A failing drop or chat alert must not hold the close, the band emails or the flash results."""
    from airflow.sdk import TriggerRule

    dag = dagbag.dags["nps_wave"]
    attached_to, tasks = SIDE_BRANCHES[branch]
    assert tasks[0] in dag.get_task(attached_to).downstream_task_ids
    for task_id in tasks:
        waiting = {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=False)} - set(tasks)
        for step in waiting:  # only customer steps that run whatever became of it
            rule = dag.get_task(step).trigger_rule
            assert rule in (TriggerRule.ALL_DONE, TriggerRule.ALL_DONE_MIN_ONE_SUCCESS), f"{step} waits for {task_id}"
    colleagues_after = {t.task_id for t in dag.get_task(tasks[-1]).get_flat_relatives(upstream=False)}
    assert colleagues_after <= {"send_followups", "export_contact_results"}


def test_the_retrospective_runs_after_close_whatever_became_of_the_flash_results(dagbag):
    from airflow.sdk import TriggerRule

    wait = dagbag.dags["nps_wave"].get_task("wait_for_retrospective")
    assert wait.upstream_task_ids == {"close_wave", "send_flash_results.check"}
    assert wait.trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS


def test_band_emails_wait_for_the_closes_detractor_routing_but_not_its_success(dagbag):
    """The close's catch-up alerts the last answers (it picks those without a band email yet) first."""
    from airflow.sdk import TriggerRule

    followups = dagbag.dags["nps_wave"].get_task("send_followups")
    # Only the close can be the one success the rule needs: no band email before a successful close.
    assert followups.upstream_task_ids == {"close_wave", "route_detractors"}
    assert followups.trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS


def test_nps_responses_runs_on_announced_answers_or_its_five_minute_timer(dagbag):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from include.nps.core import assets

    timetable = dagbag.dags["nps_responses"].timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert timetable.asset_condition.objects == (assets.ANSWERS.asset,)
    assert isinstance(timetable.timetable, CronTriggerTimetable) and timetable.timetable.expression == "*/5 * * * *"


def test_the_waves_outputs_are_assets_other_dags_can_schedule_on(dagbag):
    from include.nps.core import assets

    def outlets(dag_id: str) -> dict[str, list[str]]:
        return {t.task_id: [a.name for a in t.outlets] for t in dagbag.dags[dag_id].tasks if t.outlets}

    assert outlets("nps_wave") == {
        "close_wave": [assets.RESPONSES.name],
        "share_midwave_drop": [assets.DROPS.name],
        "share_postwave_drop": [assets.DROPS.name],
        "send_flash_results.prepare": [assets.FLASH_FIGURES.name],
        "route_detractors": [assets.FOLLOWUPS.name],
        "export_contact_results": [assets.CONTACT_RESULTS.name],
    }
    assert outlets("nps_responses") == {"alert_new_responses": [assets.FOLLOWUPS.name]}
    produced = {
        name for dag_id in ("nps_wave", "nps_responses") for names in outlets(dag_id).values() for name in names
    }
    assert produced == {a.name for a in assets.WAVE_OUTPUTS}
