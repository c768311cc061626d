"""People act inside Airflow, without Airflow: which detractors need a decision, what the request
shows (customer text escaped for Markdown), a decision taken in Airflow routed exactly as a returned
drop file's, which wins when both exist, and the flash-results approval's request and record.
The same parts under the real Airflow processes and in Chromium: tests/test_hitl.py."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from include.nps import pipeline
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import audience, flash_approval, responses, routing_rules, sales_decisions, waves
from tests.factories import contact, planned_wave, write_csv

SELLER, OTHER_SELLER = "seller1@vendor.example", "seller2@vendor.example"
HOSTILE = "Terrible [click](http://evil.example) <img src=x onerror=alert(1)> {{ 7 * 7 }} www.evil.example\n# big"
DECIDE = """
decide_in_airflow:
  when: {tier: [strategic]}
  airflow_users:
    Seller1@vendor.example: sam.seller
"""


def rules_text(extra: str = DECIDE) -> str:
    shipped = (storage.PROJECT_ROOT / "rules" / "routing.yaml").read_text(encoding="utf-8")
    return shipped + extra


@pytest.fixture
def decide_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(rules_text(), encoding="utf-8")
    monkeypatch.setenv(routing_rules.RULES_ENV, str(path))
    return path


@pytest.fixture
def closed_wave(engine, tmp_path, decide_rules) -> waves.WaveParams:
    """A closed wave: C1 and C2 detractors of a strategic account, C3 a detractor of a small one,
    C4 a promoter of the strategic account, C5 a strategic detractor whose seller has no Airflow login."""
    rows = [
        contact("C1", "A1", account_tier="strategic", sales_owner=SELLER, account_name="Big *Co*"),
        contact("C2", "A1", account_tier="strategic", sales_owner=SELLER, account_name="Big *Co*"),
        contact("C3", "A2", account_tier="smb", sales_owner=OTHER_SELLER),
        contact("C4", "A1", account_tier="strategic", sales_owner=SELLER, account_name="Big *Co*"),
        contact("C5", "A3", account_tier="strategic", sales_owner=OTHER_SELLER),
    ]
    path = write_csv(tmp_path / "contacts.csv", rows)
    wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    loaded = audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 90, wave.open_at)
    invited = audience.audience_frame(engine, wave.wave_id)
    outbox.enqueue(engine, wave.wave_id, "invitation", zip(invited["contact_id"], invited["email"], strict=True))
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": wave.open_at})
    waves.set_status(engine, wave.wave_id, "open")
    for contact_id, score, comment in [("C1", 3, HOSTILE), ("C2", 5, ""), ("C3", 2, "meh"), ("C4", 10, "great")]:
        answer = {"score": score, "comment": comment, "pillar_answers": {"support": 3}}
        responses.record_response(engine, wave.wave_id, contact_id, answer)
    responses.record_response(engine, wave.wave_id, "C5", {"score": 0, "comment": "", "pillar_answers": {}})
    pipeline.close_wave(wave.wave_id)
    return wave


def _followups(engine, wave_id: str) -> dict[str, dict]:
    rows = storage.fetch_all(
        engine,
        "SELECT contact_id, owner_type, owner, owner_source, rule_id FROM followups WHERE wave_id = :w",
        w=wave_id,
    )
    return {r["contact_id"]: r for r in rows}


def test_the_rules_name_who_decides_in_airflow_and_a_mistake_is_reported_with_its_place():
    rules = routing_rules.parse(__import__("yaml").safe_load(rules_text()), "routing.yaml")
    setting = rules.decide_in_airflow
    assert setting is not None and setting.airflow_user("SELLER1@vendor.example") == "sam.seller"
    assert setting.needs_decision(routing_rules.Facts(score=3, tier="Strategic"))
    assert not setting.needs_decision(routing_rules.Facts(score=3, tier="smb"))
    assert routing_rules.parse(__import__("yaml").safe_load(rules_text("")), "x").decide_in_airflow is None
    broken = rules_text("\ndecide_in_airflow:\n  when: {tier: strategic, teir: x}\n  airflow_users: [a]\n")
    with pytest.raises(routing_rules.RulesError) as caught:
        routing_rules.parse(__import__("yaml").safe_load(broken), "routing.yaml")
    text = str(caught.value)
    assert "decide_in_airflow.when.teir" in text and "decide_in_airflow.airflow_users" in text, text


def test_only_undecided_detractors_the_rules_name_get_a_request_showing_their_answer_escaped(engine, closed_wave):
    found = pipeline.sales_decision_requests(closed_wave.wave_id)
    by_contact = {r["contact_id"]: r for r in found}
    assert set(by_contact) == {"C1", "C2", "C5"}  # not the small account, not the promoter
    first = by_contact["C1"]
    assert first["defaults"] == ["sales"]  # the shipped rules: strategic accounts to their salesperson
    assert first["assigned_users"] == [{"id": "sam.seller", "name": "sam.seller"}]
    assert by_contact["C5"]["assigned_users"] is None  # no Airflow login: anyone allowed answers
    assert by_contact["C5"]["defaults"] == ["sales"]
    due = waves.milestone_due(engine, closed_wave.wave_id, "flash")
    assert dt.datetime.fromisoformat(first["decide_by"]) == due
    body = first["body"]
    # Customer text shown as written, in code (the comment a fenced block of its own lines): no link,
    # not even a bare URL, no HTML, no heading, no template.
    assert "```text\n" + HOSTILE + "\n```" in body and "| ` Big *Co* ` (` strategic `) |" in body
    outside = re.sub(r"`[^`]*`", "", re.sub(r"```text\n.*?\n```", "", body, flags=re.S))
    for raw in ("](", "<", "www.", "{{", "\n# "):
        assert raw not in outside, raw
    assert "| Score | 3 |" in body and "(rule ` sales-led-tiers@v1 `)" in body
    assert first["subject"] == "Who follows up Big *Co* (score 3)? Proposed: sales"
    # Each request is the keyword arguments of one mapped human-in-the-loop task.
    from include.nps.human_tasks import DecideFollowupOwner

    for kwargs in found:
        task = DecideFollowupOwner(task_id="decide_followup_owner", options=["sales", "cs"], **kwargs)
        assert task.defaults == kwargs["defaults"] and task.request_label.endswith(kwargs["contact_id"])
    # Decided already (here in a returned file): not asked again.
    sales_decisions.record_answer(engine, closed_wave.wave_id, "C2", "cs", "sam.seller")
    assert {r["contact_id"] for r in pipeline.sales_decision_requests(closed_wave.wave_id)} == {"C1", "C5"}


def test_no_decide_in_airflow_setting_asks_nobody(engine, closed_wave, decide_rules):
    decide_rules.write_text(rules_text(""), encoding="utf-8")
    assert pipeline.sales_decision_requests(closed_wave.wave_id) == []


def test_a_decision_taken_in_airflow_is_routed_exactly_as_the_same_decision_in_a_returned_file(
    engine, closed_wave, nps_home
):
    wave_id = closed_wave.wave_id
    pipeline.route_detractors(wave_id)
    before = _followups(engine, wave_id)
    # Through a returned file (the fallback) ...
    returned = nps_home / "reports" / wave_id / "returned"
    returned.mkdir(parents=True)
    (returned / "seller1.csv").write_text("Contact ID;Sales decision (sales / cs)\r\nC1;cs\r\n", encoding="utf-8")
    pipeline.route_detractors(wave_id)
    by_file = _followups(engine, wave_id)
    # ... and, on the same wave reset, through the answer in Airflow.
    (returned / "seller1.csv").unlink()
    storage.execute(engine, "DELETE FROM sales_decisions")
    storage.execute(engine, "DELETE FROM followups")
    pipeline.route_detractors(wave_id)
    applied = pipeline.apply_sales_decision(wave_id, "C1", "cs", "sam.seller")
    in_airflow = _followups(engine, wave_id)

    assert before["C1"]["owner_type"] == "sales" and before["C1"]["owner_source"] == "rule"
    assert by_file == in_airflow
    assert in_airflow["C1"] == {
        "contact_id": "C1",
        "owner_type": "cs",
        "owner": "csm@vendor.example",
        "owner_source": "sales_decision",
        "rule_id": "sales-led-tiers@v1",
    }
    assert applied["owner"] == "csm@vendor.example" and applied["answered_by"] == "sam.seller"


def test_a_persons_answer_in_airflow_wins_over_a_returned_file_which_wins_over_a_default(engine, closed_wave, nps_home):
    wave_id = closed_wave.wave_id
    returned = nps_home / "reports" / wave_id / "returned"
    returned.mkdir(parents=True)
    (returned / "all.csv").write_text(
        "Contact ID;Sales decision (sales / cs)\r\nC1;sales\r\nC2;cs\r\n", encoding="utf-8"
    )
    pipeline.apply_sales_decision(wave_id, "C1", "cs", "sam.seller")  # answered in Airflow
    pipeline.apply_sales_decision(wave_id, "C2", "sales", None)  # the default stood: the file decides
    pipeline.apply_sales_decision(wave_id, "C5", "sales", None)  # nothing else: the default stands
    pipeline.route_detractors(wave_id)  # the files read again, later
    stored = storage.fetch_all(engine, "SELECT contact_id, decision, source FROM sales_decisions ORDER BY contact_id")
    assert stored == [
        {"contact_id": "C1", "decision": "cs", "source": "airflow:sam.seller"},
        {"contact_id": "C2", "decision": "cs", "source": "all.csv"},
        {"contact_id": "C5", "decision": "sales", "source": "airflow:default"},
    ]
    owners = {c: (r["owner_type"], r["owner_source"]) for c, r in _followups(engine, wave_id).items()}
    assert owners["C1"] == ("cs", "sales_decision") and owners["C2"] == ("cs", "sales_decision")
    with pytest.raises(ValueError, match="sales or cs"):
        sales_decisions.record_answer(engine, wave_id, "C1", "marketing", "sam.seller")


def test_the_flash_approval_shows_the_figures_and_a_sample_email_and_a_rejection_is_recorded(engine, closed_wave):
    request = pipeline.flash_approval_request(closed_wave.wave_id, "reject")
    assert request["subject"] == f"Send the flash results of {closed_wave.wave_name} to 5 contacts?"
    body = request["body"]
    # 5 answers: 1 promoter, 4 detractors: NPS -60; the sample is the flash email as a reader gets it.
    assert "| NPS | -60 | – |" in body and "| 1 / 0 / 4 |" in body.replace(" / 4 | –", " / 4 |")
    assert "Hello Sample Reader," in body and "Net Promoter Score: -60" in body
    assert "Nobody answering by then: **reject**" in body
    assert dt.datetime.fromisoformat(request["decide_by"]) == waves.milestone_due(engine, closed_wave.wave_id, "flash")

    summary = flash_approval.record(engine, closed_wave.wave_id, False, "cs.lead")
    row = storage.fetch_one(engine, "SELECT success, summary, details FROM check_results WHERE step = 'flash_approval'")
    assert summary == "flash results rejected by cs.lead; not sent"
    assert row["success"] and row["summary"] == summary
    assert json.loads(row["details"]) == [{"approved": False, "answered_by": "cs.lead"}]


class _TaskInstance:
    """What the approval task reads and writes of its task instance while it resumes."""

    map_index = -1

    def __init__(self, wave_id: str) -> None:
        self.wave_id, self.pushed = wave_id, {}

    def xcom_pull(self, task_ids: str) -> dict:
        assert task_ids == "plan_wave"
        return {"wave_id": self.wave_id}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


@pytest.mark.parametrize(("option", "timed_out"), [("Reject", False), ("Approve", True)])
def test_a_rejection_is_recorded_and_skips_only_the_flash_results_wait(engine, closed_wave, option, timed_out):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import TriggerRule
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    dag = DagBag(dag_folder=str(storage.PROJECT_ROOT / "dags" / "nps_wave.py")).dags["nps_wave"]
    gate = dag.get_task("approve_flash_results")
    # The gate off (skipped), the flash results wait and go as before.
    assert gate.downstream_task_ids == {"wait_for_flash"}
    assert dag.get_task("wait_for_flash").trigger_rule == TriggerRule.NONE_FAILED
    # Rejected: the wait and the whole mailing are skipped; the retrospective, which waits for the close
    # or the flash results, runs.
    not_sent = ["send_flash_results.check", "send_flash_results.prepare", "send_flash_results.send", "wait_for_flash"]
    assert [t.task_id for t in gate.not_sent(gate)] == not_sent
    assert dag.get_task("wait_for_retrospective").trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    ti = _TaskInstance(closed_wave.wave_id)
    user = None if timed_out else {"id": "cs.lead", "name": "cs.lead"}
    event = {"chosen_options": [option], "params_input": {}, "responded_at": dt.datetime.now(dt.UTC)}
    event |= {"responded_by_user": user, "timedout": timed_out}
    context = {"ti": ti, "task": gate, "params": {}}
    if option == "Reject":
        with pytest.raises(DownstreamTasksSkipped) as skipped:
            gate.execute_complete(context, event)
        assert skipped.value.tasks == not_sent
    else:
        assert gate.execute_complete(context, event)["chosen_options"] == ["Approve"]
    row = storage.fetch_one(engine, "SELECT summary FROM check_results WHERE step = 'flash_approval'")
    expected = {
        "Reject": "flash results rejected by cs.lead; not sent",
        "Approve": "flash results approved by nobody: the timeout policy",
    }
    assert row["summary"] == expected[option]


def test_a_retried_decision_task_applies_the_answer_a_person_gave_instead_of_asking_again(engine, closed_wave):
    from include.nps.human_tasks import DecideFollowupOwner

    wave_id = closed_wave.wave_id
    pipeline.apply_sales_decision(wave_id, "C1", "cs", "sam.seller")  # the first try, answered
    pipeline.apply_sales_decision(wave_id, "C2", "sales", None)  # the default stood: nobody answered
    storage.execute(engine, "DELETE FROM followups")  # what the first try's routing did is gone
    decide_by = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    task = DecideFollowupOwner(
        task_id="decide_followup_owner",
        subject="Who follows up?",
        options=["sales", "cs"],
        defaults=["sales"],
        wave_id=wave_id,
        contact_id="C1",
        decide_by=decide_by,
    )
    applied = task.execute({})  # asking would need a running task instance: it does not ask
    assert (applied["decision"], applied["answered_by"], applied["owner_type"]) == ("cs", "sam.seller", "cs")
    assert _followups(engine, wave_id)["C1"]["owner_source"] == "sales_decision"
    assert pipeline.kept_sales_decision(wave_id, "C2") is None  # a default is asked again on a retry
    assert pipeline.kept_sales_decision(wave_id, "C3") is None
