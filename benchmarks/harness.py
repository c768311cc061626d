"""What the scale benchmarks share: a throwaway PostgreSQL cluster, a fresh NPS database on it,
running a measured step in a child process (its peak RSS is its own), and printing rows."""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def postgres(max_connections: int = 100) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (Debian's binaries, fsync on, as in production)."""
    from devkit.servers import free_port

    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
    data = Path(tempfile.mkdtemp(prefix="nps-bench-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_postgres, *command], check=True, capture_output=True)  # noqa: S603

    run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server of `server_url`: its URL."""
    from sqlalchemy import create_engine, text

    name = f"nps_bench_{time.time_ns()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def database(db: str) -> Iterator[str | None]:
    """The NPS DB a benchmark runs on: None for "sqlite" (the embedded default), a fresh database on a
    throwaway PostgreSQL cluster for "pg", or a fresh database on the server of a PostgreSQL URL."""
    if db == "sqlite":
        yield None
    elif db == "pg":
        with postgres() as server:
            yield fresh_database(server)
    else:
        yield fresh_database(db)


def in_child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`target(*args)` in a fresh ('spawn') process; its result gets `peak_rss_mib`, the child's own."""
    return run_in_child(_measured, target, *args)


def run_in_child(target: Callable[..., Any], *args: Any) -> Any:
    """`target(*args)` in a fresh ('spawn') process, which ends with it: what it returns."""
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(target, args)


def _measured(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    result = target(*args)
    return {**result, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    """step, seconds and peak RSS of the product beside the plain alternative, and the ratio (a
    missing figure is a dash)."""
    print(f"\n{title}")
    print(f"{'step':<52}{'product s':>10}{'RSS MiB':>9}{'plain s':>9}{'RSS MiB':>9}{'ratio':>8}")
    for row in rows:
        ours, plain = row.get("seconds"), row.get("plain_seconds")
        ratio = f"{ours / plain:.2f}x" if ours and plain else "-"
        print(
            f"{row['step']:<52}{_figure(ours, 10, 1)}{_figure(row.get('peak_rss_mib'), 9, 0)}"
            f"{_figure(plain, 9, 1)}{_figure(row.get('plain_rss_mib'), 9, 0)}{ratio:>8}",
            flush=True,
        )


def _figure(value: float | None, width: int, digits: int) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"
