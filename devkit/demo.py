"""`make demo`: one whole NPS wave on the embedded default, on a compressed timeline.

SQLite NPS DB and Airflow metadata DB, a local SMTP server keeping every message as an `.eml`
file, a chat webhook keeping every post, the survey form on loopback, and simulated customers
answering through the links in their emails. Ends with a summary and where to look.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

from include.nps.core.storage import PROJECT_ROOT

DEMO_HOME = PROJECT_ROOT / "var" / "demo"
AIRFLOW_HOME = PROJECT_ROOT / ".airflow"
LOCAL_SECRET = "local-dev-secret"  # noqa: S105 - signs the demo's links on this machine only
# Seconds after the start at which each milestone falls: weeks compressed into about 90 s.
TIMELINE = {"preannounce": 2, "open": 20, "reminder": 38, "midwave": 50, "close": 62, "flash": 72, "retrospective": 76}


def wave_conf(contacts_csv: Path, start: dt.datetime, timeline: dict[str, int], name: str = "2026-Q4") -> dict:
    at = {k: (start + dt.timedelta(seconds=v)).isoformat() for k, v in timeline.items()}
    return {
        "wave_name": name,
        "program": "customer-nps",
        "product": "Acme Cloud",
        "country": "US",
        "audience_csv": str(contacts_csv),
        "open_at": at["open"],
        "close_at": at["close"],
        "preannounce_at": at["preannounce"],
        "reminder_at": at["reminder"],
        "midwave_at": at["midwave"],
        "flash_at": at["flash"],
        "retrospective_at": at["retrospective"],
        "sales_recipients": ["sales-team@vendor.example", "sales-ops@vendor.example"],
        "drop_allow_list": ["vendor.example"],
        "cs_ops_recipients": ["cs-ops@vendor.example"],
    }


def use_demo_home() -> None:
    """This process's NPS DB and files in `DEMO_HOME` (the DB `make airflow` shows too) and the
    local secret of the signed links (`make airflow` and `make survey` use the same)."""
    DEMO_HOME.mkdir(parents=True, exist_ok=True)
    os.environ["NPS_HOME"] = str(DEMO_HOME)
    os.environ.setdefault("NPS_SECRET_KEY", LOCAL_SECRET)


def main() -> None:
    from devkit.localrun import configure_airflow, migrate_airflow_db

    shutil.rmtree(DEMO_HOME, ignore_errors=True)
    use_demo_home()
    configure_airflow(AIRFLOW_HOME)
    print("Preparing the Airflow metadata DB ...", flush=True)
    migrate_airflow_db()

    from devkit import simulate
    from devkit.localrun import run_wave
    from devkit.servers import ChatSink, SmtpServer, SurveyServer
    from include.nps.core.connections import nps_engine

    contacts_csv = simulate.write_population(DEMO_HOME / "contacts.csv")
    engine = nps_engine()
    simulate.seed_history(engine, contacts_csv, "customer-nps", dt.datetime.now(dt.UTC) - dt.timedelta(days=150))
    mail_dir = DEMO_HOME / "mail"
    with (
        SmtpServer(mail_dir) as smtp,
        ChatSink(DEMO_HOME / "chat" / "posts.jsonl") as chat,
        SurveyServer(engine, simulate.form_settings()) as survey,
    ):
        os.environ["AIRFLOW_CONN_NPS_SMTP"] = smtp.connection_uri()
        os.environ["AIRFLOW_CONN_NPS_CHAT"] = chat.connection_uri()
        os.environ["NPS_SURVEY_BASE_URL"] = survey.base_url
        respondents = simulate.Respondents(mail_dir)
        respondents.start()
        conf = wave_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE)
        print(
            f"Running wave {conf['wave_name']!r}: survey form at {survey.base_url}, SMTP on 127.0.0.1:{smtp.port}",
            flush=True,
        )
        started = time.monotonic()
        dag_run = run_wave(conf)
        elapsed = time.monotonic() - started
        respondents.stop()
    print_summary(engine, "customer-nps-2026-q4", str(dag_run.state), elapsed, mail_dir, chat.path)
    if str(dag_run.state) != "success":
        raise SystemExit(1)


def print_summary(engine, wave_id: str, state: str, elapsed: float, mail_dir: Path, chat_log: Path) -> None:
    from include.nps.core import storage
    from include.nps.core.connections import db_url, reports_dir
    from include.nps.delivery import outbox
    from include.nps.wave import audience, waves
    from include.nps.wave.stats import wave_summary

    wave = waves.load_params(engine, wave_id)
    summary = wave_summary(engine, wave_id, wave.pillar_questions)
    quarantined = storage.fetch_one(
        engine, "SELECT COUNT(DISTINCT row_number) AS n FROM quarantine WHERE wave_id = :w", w=wave_id
    )["n"]
    routed = storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM followups WHERE wave_id = :w", w=wave_id)["n"]
    items = storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM action_items WHERE wave_id = :w", w=wave_id)["n"]
    checks = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n, SUM(CASE WHEN success THEN 1 ELSE 0 END) AS ok FROM check_results WHERE wave_id = :w",
        w=wave_id,
    )
    lines = [
        "",
        f"NPS wave {wave_id}: DAG run {state} in {elapsed:.0f} s",
        f"  audience        {audience.audience_counts(engine, wave_id)} (quarantined input rows: {quarantined})",
        "  sent per kind:",
        *[f"    {kind:<18} {counts}" for kind, counts in sorted(outbox.counts(engine, wave_id).items())],
        f"  responses       {summary['responses']} of {summary['invited']} invited ({summary['response_rate']}%)",
        f"  NPS             {summary['nps']:+.1f} (promoters {summary['promoters']}, "
        f"passives {summary['passives']}, detractors {summary['detractors']})",
        f"  detractors routed  {routed}",
        f"  action items opened {items}",
        f"  data checks     {checks['ok']} of {checks['n']} passed",
        "",
        "Where to look:",
        f"  emails (.eml)   {mail_dir}",
        f"  reports (XLSX)  {reports_dir(wave_id)}",
        f"  chat alerts     {chat_log}",
        f"  NPS database    {db_url()}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
