"""Benchmark: one wave-wide mailing of N messages through the nps_wave DAG on CeleryExecutor, with one
Celery worker and with two, beside the same mailing sent in one process without Airflow.

Prints figures; asserts nothing. `python -m benchmarks.bench_celery [N] [WORKERSxSLOTS ...]`
(default: 20000 messages, `1x2 2x2`: one worker of two task slots, then two of two).

- on Celery: a throwaway cluster per configuration (tests/airflow_cluster.py: api-server, scheduler,
  dag-processor, triggerer and the Celery workers; Redis as the broker, the metadata DB and the NPS
  DB on one PostgreSQL server, fsync on as in production). A wave of N contacts is triggered through
  the REST API; it is planned, its audience built, and its first mailing, the preannouncement, runs
  as in production: `prepare` (the ledger rows, in chunks of the form's default 500), a mapped `send`
  task per range of chunks (at most 4 at once per wave, `PARALLEL_SENDS`, in the 4-slot `nps_email`
  pool), `check`. Timed from the task instances' start and end: prepare's start -> the last send's
  end -> check's end. Peak memory: each worker's process tree (its main process, pool processes and
  the task processes they start), its PSS summed (proportional set size: pages the forked processes
  share are counted once), sampled every 0.5 s with psutil; the largest worker's.
- in one process, no Airflow: `pipeline.prepare_mailing`, `pipeline.send_mailing_chunks` over each
  range of chunks in turn, `pipeline.check_mailing`, in a child process ('spawn'; the wave planned and
  its audience built before, in another child); peak RSS its `ru_maxrss`.

Every run's messages go to its own local SMTP server (devkit.servers.SmtpServer, one .eml per
message), and the ledger is compared with what it received, row by row: each row sent arrived once
with its Message-ID, nothing else arrived. The machine has 2 cores: two workers there share them,
so the figures show that the work spreads over both workers and every message goes out once, more
than a speed-up, which needs workers on machines of their own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from benchmarks import harness
from devkit.localrun import configure_airflow
from devkit.servers import SmtpServer
from include.nps.core import storage

DAG_ID = "nps_wave"
KIND, GROUP = "preannouncement", "send_preannouncement"
WAVE_NAME = "2026-Q4"
WAVE_ID = "customer-nps-2026-q4"
LOCALES = ["en", "en", "en", "ja", "zh", "he", "nb"]  # as devkit.simulate's population
CONTACTS_PER_ACCOUNT = 10
# Seconds after the trigger: the preannouncement at once; the invitations and the rest hours later.
TIMELINE = {
    "preannounce": 5,
    "open": 4 * 3600,
    "reminder": 5 * 3600,
    "midwave": 5 * 3600 + 60,
    "close": 6 * 3600,
    "flash": 6 * 3600 + 60,
    "retrospective": 6 * 3600 + 120,
}
RUN_TIMEOUT = 3 * 3600  # seconds a configuration may take before the benchmark gives up on it


def write_contacts(path: Path, size: int) -> Path:
    """`size` valid contacts, ten per account, in the locales of the demo's population."""
    from tests.factories import contact, write_csv

    rows = [
        contact(f"C{n:06d}", account=f"A{n // CONTACTS_PER_ACCOUNT:05d}", locale=LOCALES[n % len(LOCALES)])
        for n in range(size)
    ]
    return write_csv(path, rows)


def wave_conf(contacts_csv: Path) -> dict[str, Any]:
    from devkit.demo import wave_conf as demo_conf

    return {**demo_conf(contacts_csv, dt.datetime.now(dt.UTC), TIMELINE, name=WAVE_NAME), "chunk_size": 500}


# -- on Celery -----------------------------------------------------------------------------------


def on_celery(server_url: str, home: Path, contacts_csv: Path, workers: int, slots: int) -> dict[str, Any]:
    """The mailing through nps_wave on a fresh cluster of `workers` Celery workers of `slots` each."""
    from tests.airflow_cluster import AirflowCluster, CeleryWorkers, RedisServer, create_database, wait_until

    stamp = time.time_ns()
    metadata_url = create_database(server_url, f"airflow_bench_{stamp}")
    engine = storage.make_engine(create_database(server_url, f"nps_bench_{stamp}"))
    storage.migrate(engine)
    with RedisServer(home / "redis") as redis, SmtpServer(home / "mail") as smtp:
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
            "NPS_HOME": str(home / "nps"),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        }
        cluster = AirflowCluster(home / "airflow", metadata_url, env, celery=CeleryWorkers(redis.url, workers, slots))
        try:
            cluster.migrate()
            cluster.start()
            wait_until(lambda: cluster.api("GET", f"/dags/{DAG_ID}").ok, 300, "nps_wave parsed")
            cluster.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
            with MemorySampler([cluster.processes[name].pid for name in cluster.celery.names]) as memory:
                triggered = cluster.api(
                    "POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": wave_conf(contacts_csv)}
                )
                triggered.raise_for_status()
                run_id = triggered.json()["dag_run_id"]
                wait_until(lambda: _mailing_done(cluster, run_id), RUN_TIMEOUT, f"{GROUP}.check done", every=2)
            tis = [ti for ti in cluster.task_instances(DAG_ID, run_id) if ti["task_id"].startswith(f"{GROUP}.")]
            ran = cluster.celery_task_workers()
            sends_by_worker = Counter(ran.get(ti, "?") for ti in _celery_ids(metadata_url, run_id))
        finally:
            cluster.stop()
        figures = _figures(tis)
        figures.update(delivered=ledger_vs_server(engine, smtp.spool.folder), peak_mib=memory.peak_mib)
        figures["sends_by_worker"] = dict(sorted(sends_by_worker.items()))
    engine.dispose()
    return figures


def _mailing_done(cluster: Any, run_id: str) -> bool:
    states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)}
    if {"failed", "upstream_failed"} & set(states.values()):
        raise RuntimeError(f"a task failed: {states}\n{cluster.failed_task_logs(DAG_ID, run_id)}")
    return states.get(f"{GROUP}.check") == "success"


def _celery_ids(metadata_url: str, run_id: str) -> list[str]:
    """The Celery task id (external_executor_id) of each of the mailing's send tasks."""
    from sqlalchemy import create_engine, text

    metadata = create_engine(metadata_url)
    with metadata.connect() as conn:
        found = conn.execute(
            text("SELECT external_executor_id FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t"),
            {"d": DAG_ID, "r": run_id, "t": f"{GROUP}.send"},
        ).scalars()
        ids = list(found)
    metadata.dispose()
    return ids


def _figures(tis: list[dict]) -> dict[str, Any]:
    """prepare's start -> last send's end -> check's end, from the task instances of the group."""
    at = lambda value: dt.datetime.fromisoformat(value)  # noqa: E731
    by_task = defaultdict(list)
    for ti in tis:
        by_task[ti["task_id"].split(".", 1)[1]].append(ti)
    (prepare,), (check,), sends = by_task["prepare"], by_task["check"], by_task["send"]
    start, last_send = at(prepare["start_date"]), max(at(ti["end_date"]) for ti in sends)
    first_send = min(at(ti["start_date"]) for ti in sends)
    return {
        "send_tasks": len(sends),
        "prepare_s": (at(prepare["end_date"]) - start).total_seconds(),
        "sends_s": (last_send - first_send).total_seconds(),
        "check_s": (at(check["end_date"]) - last_send).total_seconds(),
        "total_s": (at(check["end_date"]) - start).total_seconds(),
    }


class MemorySampler:
    """Peak memory of the largest of these process trees: the PSS of the root and its descendants,
    summed, sampled every 0.5 s."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in self.pids:
                self.peak_mib = max(self.peak_mib, _tree_pss(pid) / 2**20)


def _tree_pss(pid: int) -> int:
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        return 0
    return total


# -- in one process, no Airflow ------------------------------------------------------------------


def _child_env(home: str, nps_url: str, smtp_uri: str) -> None:
    configure_airflow(Path(home) / "airflow")
    os.environ.update({"NPS_HOME": str(Path(home) / "nps"), "NPS_DB_URL": nps_url, "AIRFLOW_CONN_NPS_SMTP": smtp_uri})


def plan_and_build(home: str, nps_url: str, smtp_uri: str, conf: dict[str, Any]) -> None:
    """The wave planned and its audience built, as plan_wave and build_audience do (untimed)."""
    _child_env(home, nps_url, smtp_uri)
    from include.nps import pipeline
    from include.nps.wave.trigger_form import wave_form_params

    params = {**{name: param.value for name, param in wave_form_params().items()}, **conf}  # as a run's
    pipeline.build_audience(pipeline.plan_wave(params)["wave_id"])


def mail_in_process(home: str, nps_url: str, smtp_uri: str) -> dict[str, Any]:
    """prepare -> each send task's range of chunks, one after the other -> check; timed, with peak RSS."""
    _child_env(home, nps_url, smtp_uri)
    from include.nps import pipeline

    started = time.perf_counter()
    batches = pipeline.send_batches(pipeline.prepare_mailing(WAVE_ID, KIND))
    prepared = time.perf_counter()
    for chunks in batches:
        pipeline.send_mailing_chunks(WAVE_ID, KIND, chunks)
    sent = time.perf_counter()
    pipeline.check_mailing(WAVE_ID, KIND)
    checked = time.perf_counter()
    return {
        "send_tasks": len(batches),
        "prepare_s": prepared - started,
        "sends_s": sent - prepared,
        "check_s": checked - sent,
        "total_s": checked - started,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_one_process(server_url: str, home: Path, contacts_csv: Path) -> dict[str, Any]:
    from tests.airflow_cluster import create_database

    nps_url = create_database(server_url, f"nps_bench_{time.time_ns()}")
    engine = storage.make_engine(nps_url)
    storage.migrate(engine)
    with SmtpServer(home / "mail") as smtp:
        args = (str(home), nps_url, smtp.connection_uri())
        harness.run_in_child(plan_and_build, *args, wave_conf(contacts_csv))
        figures = harness.run_in_child(mail_in_process, *args)
        figures["delivered"] = ledger_vs_server(engine, smtp.spool.folder)
    engine.dispose()
    return figures


# -- what arrived --------------------------------------------------------------------------------


def ledger_vs_server(engine: Any, spool: Path) -> dict[str, int]:
    """The ledger's rows against the SMTP server's messages, row by row: `once` rows sent arrived
    exactly once with their Message-ID; `missing`, `duplicated` and `unexpected` should be 0."""
    received: dict[tuple[str, str], list[str]] = defaultdict(list)
    parser = BytesHeaderParser(policy=policy.default)
    for path in spool.glob("*.eml"):
        with path.open("rb") as file:
            headers = parser.parse(file)
        received[(headers["X-NPS-Kind"], headers["To"])].append(headers["Message-ID"])
    rows = storage.fetch_all(
        engine, "SELECT kind, address, status, message_id FROM outbox WHERE wave_id = :w", w=WAVE_ID
    )
    result = Counter(rows=len(rows), arrived=sum(map(len, received.values())))
    for row in rows:
        copies = received.pop((row["kind"], row["address"]), [])
        if row["status"] != "sent":
            result["unexpected" if copies else "not_sent"] += 1
        elif copies == [row["message_id"]]:
            result["once"] += 1
        else:
            result["duplicated" if len(copies) > 1 else "missing"] += 1
    result["unexpected"] += sum(map(len, received.values()))
    return dict(result)


# -- report --------------------------------------------------------------------------------------


def _line(name: str, figures: dict[str, Any], size: int, baseline: float | None) -> str:
    delivered = figures["delivered"]
    exact = delivered.get("once") == size == delivered.get("rows") == delivered.get("arrived")
    ratio = f"{figures['total_s'] / baseline:5.2f}x" if baseline else "   1x"
    return (
        f"{name:<28}{figures['send_tasks']:>6}{figures['prepare_s']:>9.1f}{figures['sends_s']:>9.1f}"
        f"{figures['check_s']:>8.1f}{figures['total_s']:>9.1f}  {ratio}{size / figures['total_s']:>8.0f}"
        f"{figures['peak_mib']:>10.0f}  {'yes' if exact else 'NO'} ({_counts(delivered)})"
    )


def _counts(delivered: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in delivered.items())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    size = int(args[0]) if args else 20000
    configs = [tuple(int(part) for part in arg.split("x")) for arg in args[1:]] or [(1, 2), (2, 2)]
    load = os.getloadavg()[0]
    print(
        f"bench_celery: a mailing of {size} messages ({KIND}, chunks of 500); {os.cpu_count()} cores, "
        f"shared (load average {load:.1f} at start); python {sys.version.split()[0]}",
        flush=True,
    )
    home = Path(tempfile.mkdtemp(prefix="nps-bench-celery-"))
    configure_airflow(home / "airflow")
    os.environ.setdefault("NPS_SECRET_KEY", "bench-only-secret")
    started = time.perf_counter()
    try:
        contacts_csv = write_contacts(home / "contacts.csv", size)
        runs = []
        with harness.postgres(max_connections=200) as server_url:
            alone = in_one_process(server_url, home / "in-process", contacts_csv)
            print(f"  in one process: {alone['total_s']:.0f} s", flush=True)
            for workers, slots in configs:
                figures = on_celery(server_url, home / f"celery-{workers}x{slots}", contacts_csv, workers, slots)
                runs.append((workers, slots, figures))
                print(f"  {workers} x {slots}: {figures['total_s']:.0f} s, {figures['sends_by_worker']}", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"\n{'mailing (prepare -> check)':<28}{'tasks':>6}{'prepare':>9}{'sends':>9}{'check':>8}{'total s':>9}"
        f"  {'ratio':>5}{'msg/s':>8}{'peak MiB':>10}  every message once"
    )
    print(_line("in one process, no Airflow", alone, size, None))
    for workers, slots, figures in runs:
        name = f"{workers} worker{'s' if workers > 1 else ''} x {slots} slots"
        print(_line(name, figures, size, alone["total_s"]))
        print(f"{'':<28}send tasks per worker: {figures['sends_by_worker']}")
    print(f"total {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
