"""Data protection requests as CS ops and the DPO make them: the `nps_privacy` DAG's form (under
`dag.test()`), the command line, the retention DAG, the audit trail's page on the dashboard, and an
audience load that leaves out an erased person without naming them anywhere."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.privacy import __main__ as cli
from include.nps.privacy import audit
from include.nps.wave import audience, responses, waves
from include.nps.web import dashboard_app
from tests.factories import contact, planned_wave, write_csv

EMAIL = "yael.cohen@negev.example"
COMMENT = "השירות איטי מאוד בחודש האחרון"


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPS_PRIVACY_SALT", "requests-salt")


@pytest.fixture
def answered(engine, tmp_path) -> tuple[waves.WaveParams, Path]:
    """An open wave whose audience holds Yael (who answered with a comment) and two others."""
    rows = [contact("IL7", "A1", email=EMAIL, name="Yael Cohen", locale="he"), contact("JP1", "A2"), contact("CN1")]
    path = write_csv(tmp_path / "contacts.csv", rows)
    wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1), frequency_days=0)
    loaded = audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 0, wave.open_at)
    waves.set_status(engine, wave.wave_id, "open")
    responses.record_response(engine, wave.wave_id, "IL7", {"score": 2, "comment": COMMENT, "pillar_answers": {}})
    return wave, path


def _held(engine, value: str) -> int:
    return int(
        storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM contacts WHERE LOWER(email) = :e", e=value.lower())["n"]
    )


def test_the_command_line_exports_erases_and_dry_runs_retention(engine, answered, tmp_path, capsys):
    assert cli.main(["export", "--email", EMAIL, "--out", str(tmp_path / "out"), "--actor", "dpo"]) == 0
    done = json.loads(capsys.readouterr().out)
    exported = json.loads(Path(done["export"]["json"]).read_text(encoding="utf-8"))
    assert exported["tables"]["responses"][0]["comment"] == COMMENT
    assert exported["subject"]["emails"] == [EMAIL]

    assert cli.main(["erase", "--contact-id", "IL7", "--actor", "dpo", "--reason", "DSR-4"]) == 0
    erased = json.loads(capsys.readouterr().out)["erasure"]
    assert erased["rows"]["responses"] == 1 and erased["suppressed"] == 2  # address and contact id
    assert _held(engine, EMAIL) == 0
    assert storage.fetch_one(engine, "SELECT comment, score FROM responses") == {"comment": None, "score": 2}

    assert cli.main(["retention", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["programs"] == {}  # no program keeps data for a limited time
    trail = audit.events(engine)
    assert [(e["action"], e["actor"]) for e in trail[:2]] == [("erasure", "cli:dpo"), ("export", "cli:dpo")]
    assert all(EMAIL not in json.dumps(e, default=str) and "IL7" not in json.dumps(e, default=str) for e in trail)


def test_an_erased_person_is_left_out_of_the_next_load_and_named_nowhere(engine, answered, tmp_path):
    from include.nps.delivery import outbox
    from include.nps.privacy import erasure

    wave, _ = answered
    outbox.enqueue(engine, wave.wave_id, "reminder", [("IL7", EMAIL)])  # not sent yet
    erasure.erase(engine, "dpo", email=EMAIL.upper())
    pending = storage.fetch_all(engine, "SELECT status, address FROM outbox WHERE kind = 'reminder'")
    assert [row["status"] for row in pending] == ["suppressed"] and EMAIL not in pending[0]["address"]
    # the next extract still has her, under another case, and a broken row beside her
    rows = [contact("IL7", "A1", email=EMAIL.upper(), name="Yael Cohen"), contact("JP1", "A2"), contact("CN1")]
    again = write_csv(tmp_path / "again.csv", rows)
    rejected = tmp_path / "rejected.csv"
    loaded = audience.load_contacts(engine, "test-w2", again, rejected_csv=rejected)
    assert loaded.contact_ids == ["JP1", "CN1"]
    assert [(p["row_number"], p["field"], p["value"]) for p in loaded.problems] == [(2, "erased", "")]
    assert EMAIL not in rejected.read_text(encoding="utf-8-sig").lower()
    assert "Yael" not in rejected.read_text(encoding="utf-8-sig")
    assert _held(engine, EMAIL) == 0


def test_without_a_salt_nobody_is_erased(engine, answered, monkeypatch):
    from include.nps.core.subject_keys import SaltMissing
    from include.nps.privacy import erasure

    monkeypatch.delenv("NPS_PRIVACY_SALT")
    with pytest.raises(SaltMissing, match="NPS_PRIVACY_SALT"):
        erasure.erase(engine, "dpo", email=EMAIL)
    assert _held(engine, EMAIL) == 1  # nothing half done


def test_the_privacy_dag_exports_and_erases_from_its_form(
    airflow_db, engine, answered, nps_home, tmp_path_factory, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("NPS_DB_URL", engine.url.render_as_string(hide_password=False))
    # The DAG file in a bundle of its own: dag.test() syncs the DAG's bundle, and the project's
    # folder (every DAG and its Params validated) costs ten times as much.
    folder = tmp_path_factory.getbasetemp() / "privacy-dags"
    folder.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dags" / "nps_privacy.py", folder / "nps_privacy.py")
    bundle = {"name": "privacy-tests", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{**bundle, "kwargs": {"path": str(folder)}}])
    )
    bag = DagBag(dag_folder=str(folder))
    conf = {"action": "export_and_erase", "email": EMAIL, "requested_by": "dpo@vendor.example", "reason": "DSR-9"}
    run = bag.get_dag("nps_privacy").test(run_conf=conf)
    assert str(run.state) == "success"
    assert _held(engine, EMAIL) == 0
    exports = list((nps_home / "privacy" / "exports").glob("*.json"))
    assert len(exports) == 1 and COMMENT in exports[0].read_text(encoding="utf-8")
    trail = audit.events(engine)
    assert {(e["action"], e["actor"]) for e in trail} == {
        ("erasure", "dpo@vendor.example"),
        ("export", "dpo@vendor.example"),
    }
    assert next(e for e in trail if e["action"] == "erasure")["details"]["reason"] == "DSR-9"


def test_the_dashboard_shows_the_audit_trail_escaped(engine):
    audit.record(engine, "<script>alert(1)</script>", "erasure", "e-1", details={"rows_total": 3})
    audit.record(engine, "csops@vendor.example", "wave_triggered", "run-1", "test-w1", event_id="wave:run-1")
    app = dashboard_app.create_app(lambda: None, engine=lambda: engine)
    with TestClient(app) as client:
        page = client.get("/audit")
        events = client.get("/api/audit", params={"action": "wave_triggered"}).json()
        index = client.get("/").text
    assert 'href="/nps/audit"' in index  # the wave list links to it (Airflow's menu lists only "NPS waves")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "rows_total: 3" in page.text and 'href="/nps/waves/test-w1"' in page.text
    assert [(e["actor"], e["object_id"]) for e in events] == [("csops@vendor.example", "run-1")]


def test_a_run_is_audited_as_the_user_who_triggered_it_else_as_how_it_started():
    from types import SimpleNamespace

    assert audit.run_actor(SimpleNamespace(triggering_user_name="ana", run_type="manual")) == "ana"
    assert audit.run_actor(SimpleNamespace(triggering_user_name=None, run_type="scheduled")) == "airflow:scheduled"
