"""The nps_wave DAG on CeleryExecutor, as docker-compose.yaml runs it: Redis as the broker, results in
the metadata DB (PostgreSQL), and two `airflow celery worker` processes beside the api-server,
scheduler, dag-processor and triggerer. A wave of a few thousand contacts is triggered through the
REST API and runs its first mailing, the preannouncement, to everyone in its audience: the wave is
planned, its audience built and checked, the wait for the preannouncement passes through the
triggerer, and the mailing group (prepare, mapped send tasks, check) runs as in production, its send
tasks shared by the two workers. Every message reaches the SMTP server exactly once, as the ledger
says, row by row. (Every wave-wide mailing is that same group; the invitations come 50 minutes later.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import defaultdict
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from devkit.demo import wave_conf
from devkit.servers import SmtpServer
from devkit.simulate import write_population
from include.nps.core import storage
from include.nps.wave import audience
from tests.airflow_cluster import (
    REDIS_SERVER,
    AirflowCluster,
    CeleryWorkers,
    RedisServer,
    create_database,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.processes]
DAG_ID = "nps_wave"
WAVE_ID = "customer-nps-2026-q4"
ACCOUNTS = 500  # about 2,250 contacts (1-8 per account)
CHUNK_SIZE = 300  # 8 chunks: as many mapped send tasks, two rounds of the four slots
KIND, GROUP = "preannouncement", "send_preannouncement"
# Seconds after the trigger: the preannouncement at once, the rest of the wave (invitations, close
# ...) from 50 minutes on, long after the test is over.
TIMELINE = {
    "preannounce": 5,
    "open": 3000,
    "reminder": 3300,
    "midwave": 3400,
    "close": 3600,
    "flash": 3700,
    "retrospective": 3800,
}


@pytest.fixture
def redis_broker(tmp_path: Path):
    if not REDIS_SERVER.exists():
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server not found (apt-get install redis-server)")
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def celery_cluster(postgres_url: str, redis_broker: RedisServer, tmp_path: Path):
    """Airflow on CeleryExecutor with two workers of two slots each, the NPS DB on PostgreSQL and a
    local SMTP server; yields (cluster, NPS DB engine, SMTP server, metadata DB URL)."""
    stamp = time.time_ns()
    metadata_url = create_database(postgres_url, f"airflow_{stamp}")
    engine = storage.make_engine(create_database(postgres_url, f"nps_{stamp}"))
    storage.migrate(engine)
    with SmtpServer(tmp_path / "mail") as smtp:
        env = {
            "AIRFLOW_CONN_NPS_DB": json.dumps(
                {
                    "conn_type": "postgres",
                    "host": engine.url.host,
                    "port": engine.url.port,
                    "login": engine.url.username,
                    "schema": engine.url.database,
                }
            ),
            "AIRFLOW_CONN_NPS_SMTP": smtp.connection_uri(),
            "NPS_HOME": str(tmp_path / "nps"),
            # nps_wave is parsed once at start; no re-parse every 30 s competing for the two cores.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        }
        workers = CeleryWorkers(redis_broker.url, workers=2, concurrency=2)
        cluster = AirflowCluster(tmp_path / "airflow", metadata_url, env, celery=workers)
        try:
            yield cluster, engine, smtp, metadata_url
        finally:
            cluster.stop()
    engine.dispose()


def test_two_celery_workers_share_a_waves_mailing_and_every_message_goes_out_once(celery_cluster, tmp_path):
    cluster, engine, smtp, metadata_url = celery_cluster
    started = time.monotonic()
    cluster.migrate()
    cluster.start()
    wait_until(lambda: cluster.api("GET", f"/dags/{DAG_ID}").ok, 120, "nps_wave parsed by the dag-processor")
    assert cluster.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).ok
    ready = time.monotonic()

    contacts_csv = write_population(tmp_path / "contacts.csv", accounts=ACCOUNTS, seed="celery")
    conf = {**wave_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE), "chunk_size": CHUNK_SIZE}
    conf["max_rejected_share"] = 0.1  # the generated file has three bad rows on purpose
    triggered = cluster.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]
    wait_until(lambda: _checked(cluster, run_id), 300, f"{GROUP}.check done", every=1)
    done = time.monotonic()

    included = audience.included_frame(engine, WAVE_ID)
    assert len(included) > 2000
    _assert_each_message_went_out_once_as_the_ledger_says(engine, smtp, len(included))
    sends = _send_tasks(cluster, metadata_url, run_id)
    chunks = storage.fetch_one(engine, "SELECT COUNT(DISTINCT chunk) AS n FROM outbox WHERE wave_id = :w", w=WAVE_ID)
    assert len(sends) == chunks["n"] >= 6, sends  # one chunk per send task: far fewer chunks than 256
    assert set(sends.values()) == {"worker-1", "worker-2"}, sends
    print(
        f"\ncluster up in {ready - started:.0f} s; trigger -> {GROUP}.check done in {done - ready:.0f} s; "
        f"{len(included)} messages; {_per_worker(sends)}"
    )


def _checked(cluster: AirflowCluster, run_id: str) -> bool:
    """Whether the mailing's check task succeeded; fail with the logs if a process exited or a task failed."""
    if exited := [name for name in cluster.components if not cluster.running(name)]:
        pytest.fail("\n".join(f"{name} exited:\n{cluster.log_tail(name)}" for name in exited))
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)}
    if "failed" in states.values() or "upstream_failed" in states.values():
        pytest.fail(f"a task failed: {states}\n{cluster.failed_task_logs(DAG_ID, run_id)}")
    return states.get((f"{GROUP}.check", -1)) == "success"


def _assert_each_message_went_out_once_as_the_ledger_says(engine, smtp: SmtpServer, audience_size: int) -> None:
    """Row by row: a row sent arrived once, with its Message-ID; a row not sent never arrived;
    nothing arrived that the ledger does not hold as sent."""
    received: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in smtp.spool.folder.glob("*.eml"):
        with path.open("rb") as file:
            headers = BytesHeaderParser(policy=policy.default).parse(file)
        received[(headers["X-NPS-Kind"], headers["To"])].append(headers["Message-ID"])
    rows = storage.fetch_all(
        engine, "SELECT kind, address, status, message_id FROM outbox WHERE wave_id = :w", w=WAVE_ID
    )
    assert {row["kind"] for row in rows} == {KIND} and len(rows) == audience_size  # one row per recipient
    assert {row["status"] for row in rows} == {"sent", "failed"}  # the bounce* addresses are refused
    assert sum(row["status"] == "sent" for row in rows) > 0.95 * audience_size
    for row in rows:
        copies = received.pop((row["kind"], row["address"]), [])
        assert copies == ([row["message_id"]] if row["status"] == "sent" else []), row
    assert not received, f"messages the ledger does not hold as sent: {sorted(received)[:5]}"


def _send_tasks(cluster: AirflowCluster, metadata_url: str, run_id: str) -> dict[int, str]:
    """The Celery worker that ran each mapped send task (by its map index): the task instance's
    Celery task id (its external_executor_id) in the line the worker logged starting it."""
    metadata = create_engine(metadata_url)
    with metadata.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT map_index, external_executor_id FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            ),
            {"d": DAG_ID, "r": run_id, "t": f"{GROUP}.send"},
        ).all()
    metadata.dispose()
    ran = cluster.celery_task_workers()
    return {map_index: ran.get(celery_id, f"no worker logged {celery_id}") for map_index, celery_id in rows}


def _per_worker(by_task: dict[int, str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for worker in by_task.values():
        counts[worker] += 1
    return ", ".join(f"{worker} {n} send tasks" for worker, n in sorted(counts.items()))
