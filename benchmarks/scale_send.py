"""Benchmark: sending N invitations through the product's path beside a raw smtplib loop.

Prints figures; asserts nothing. `python -m benchmarks.scale_send N [sqlite|pg|POSTGRES_URL] [quick]`:

- product: `pipeline.send_mailing_chunk` over every chunk of a prepared invitation, in one process
  (template stencils per locale and zone, signed links, wire bytes, one ledger transaction per
  message, one SMTP session per chunk), with timing wrappers (wall and CPU) around its steps;
- plain: what a data engineer would write, one `smtplib.SMTP` session and `sendmail` of an f-string
  message per contact, each as large as the product's (its bytes are one product message's with
  the address and Message-ID swapped): the wire's speed from Python;
- plain (EmailMessage): the same loop building a small `EmailMessage` per contact, as
  `bench_delivery`'s does (the "raw smtplib loop" of issue 21's first figures);
- unless `quick`: the product again to a server that does not offer PIPELINING (RFC 2920), and
  with commits not flushed to disk (what if: not shipped, see `_relaxed_commits`).

All go to `Sink`, a minimal SMTP server in its own process (asyncio, no parsing beyond SMTP's
commands; it offers PIPELINING, as production relays do) that counts what it takes: its CPU time
is printed, so it can be seen not to be the bottleneck. Each run is a child process ('spawn',
`harness.in_child`); its peak RSS is its own `getrusage(RUSAGE_SELF).ru_maxrss`, the parent being
small. Audience and ledger are prepared before, untimed. "pg" starts a throwaway PostgreSQL cluster
(Debian's binaries, fsync on). Runs on the code before this work too (its own steps are timed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import random
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from benchmarks.harness import fresh_database, in_child, postgres

KIND = "invitation"
SAMPLE = 50  # messages the sink keeps whole, for a check that they parse
NAMES = (  # (locale, name): the names a real audience has, hostile ones included
    ("en", "Ada Lovelace"),
    ("ja", "山田 太郎"),
    ("he", "דוד כהן"),
    ("zh", "王小明"),
    ("nb", "Åse Øvergård"),
    ("en", "Zoë O'Brien-Smith 🎉"),
    ("en", "Jean-Baptiste Émile Grégoire de la Tour d'Auvergne-Lauraguais"),
    ("ja", "佐藤 花子さん（カスタマーサクセス部 部長代理 兼 品質保証グループ リーダー）"),
)


# -- the sink -----------------------------------------------------------------------------------


class _SinkProtocol(asyncio.Protocol):
    """One SMTP session: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; every message taken."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.in_data = False
        self.rcpt: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                if not self._end_of_data():
                    return
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._command(line)

    def _end_of_data(self) -> bool:
        if self.buffer.startswith(b".\r\n"):
            end, body = 0, b""
        else:
            end = self.buffer.find(b"\r\n.\r\n")
            if end < 0:
                return False
            body = bytes(self.buffer[: end + 2])
            end += 2
        del self.buffer[: end + 3]
        self.in_data = False
        stats = self.stats
        stats["messages"] += 1
        stats["bytes"] += len(body)
        stats["recipients"].update(self.rcpt)
        if len(stats["sample"]) < SAMPLE:
            stats["sample"].append(body)
        self.rcpt = []
        self.transport.write(b"250 2.0.0 OK\r\n")
        return True

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            pipelining = b"250-PIPELINING\r\n" if self.stats["pipelining"] else b""
            self.transport.write(
                b"250-sink\r\n" + pipelining + b"250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
            )
        elif verb == b"RCPT":
            self.rcpt.append(line[line.find(b"<") + 1 : line.rfind(b">")])
            self.transport.write(b"250 2.1.5 OK\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:  # HELO, MAIL, RSET, NOOP
            self.rcpt = [] if verb in (b"MAIL", b"RSET") else self.rcpt
            self.transport.write(b"250 OK\r\n")


def _sink_main(port_out: Any, control: Any) -> None:
    stats: dict[str, Any] = {"pipelining": True}

    def reset() -> None:
        stats.update(messages=0, bytes=0, recipients=Counter(), sample=[], cpu=time.process_time())

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SinkProtocol(stats), "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()

        def take(done: threading.Event) -> None:
            control.send(_taken(stats))
            reset()
            done.set()

        def listen() -> None:  # the parent's requests, from a thread: "take" (stats, then reset),
            while (request := control.recv()) != "stop":  # "pipelining" or not for new sessions, "stop"
                if request == "take":
                    done = threading.Event()
                    loop.call_soon_threadsafe(take, done)
                    done.wait()
                else:
                    stats["pipelining"] = request == "pipelining"
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=listen, daemon=True).start()
        await stop.wait()
        server.close()

    reset()
    asyncio.run(serve())


def _taken(stats: dict[str, Any]) -> dict[str, Any]:
    recipients = stats["recipients"]
    return {
        "messages": stats["messages"],
        "bytes": stats["bytes"],
        "recipients": len(recipients),
        "duplicates": sum(n - 1 for n in recipients.values() if n > 1),
        "sample": stats["sample"],
        "cpu": time.process_time() - stats["cpu"],
    }


class Sink:
    """The SMTP sink in its own process; `take()` returns what it took since the last take."""

    def __enter__(self) -> Sink:
        spawn = multiprocessing.get_context("spawn")
        port_in, port_out = spawn.Pipe(duplex=False)
        self._control, control = spawn.Pipe()
        self._process = spawn.Process(target=_sink_main, args=(port_out, control), daemon=True)
        self._process.start()
        self.port = port_in.recv()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._control.send("stop")
        self._process.join(timeout=10)

    def take(self) -> dict[str, Any]:
        self._control.send("take")
        return self._control.recv()

    def offer_pipelining(self, offered: bool) -> None:
        """Whether the sink offers PIPELINING (RFC 2920) to the sessions opened from now on."""
        self._control.send("pipelining" if offered else "no pipelining")

    def connection_uri(self) -> str:
        import json

        extra = {"disable_tls": True, "disable_ssl": True, "timeout": 30, "retry_limit": 0}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


# -- setup --------------------------------------------------------------------------------------


def configure(home: Path, db_url: str | None) -> None:
    """Airflow's settings and the NPS DB (SQLite in `home`, or `db_url`), before any import of them."""
    root = str(Path(__file__).resolve().parents[1])
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(root) / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    os.environ.update({"NPS_HOME": str(home / "nps"), "NPS_SECRET_KEY": "bench-scale-send"})
    for name in ("NPS_SECRET_KEY_PREVIOUS", "NPS_DB_URL", "AIRFLOW_CONN_NPS_DB"):
        os.environ.pop(name, None)
    if db_url:
        os.environ["NPS_DB_URL"] = db_url


def write_contacts(path: Path, size: int, seed: int = 21) -> Path:
    """`size` contacts, 25 per account, with names and locales as NAMES mixes them, accounts in
    COUNTRIES and one contact in ten with a time zone of their own (so their emails' times vary)."""
    import csv

    from tests.factories import FIELDS

    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*FIELDS, "account_country", "timezone"])
        for n in range(size):
            locale, name = NAMES[rng.randrange(len(NAMES))]
            account = f"A{n // 25}"
            contact = [f"C{n:07d}", f"c{n}@{account.lower()}.example", name, locale, "admin"]
            owners = ["smb", "seller@vendor.example", "csm@vendor.example", "false"]
            zone = rng.choice(ZONES) if rng.random() < 0.1 else ""
            writer.writerow([*contact, account, f"{account} Inc", *owners, COUNTRIES[(n // 25) % len(COUNTRIES)], zone])
    return path


COUNTRIES = ("US", "JP", "IL", "CN", "NO", "DE", "GB", "FR", "BR", "IN")
ZONES = ("America/Los_Angeles", "America/Chicago", "Asia/Tokyo", "Europe/Berlin", "Australia/Sydney")


def prepare_wave(home: Path, size: int) -> tuple[str, list[int]]:
    """A planned wave whose invitation to `size` contacts is in the ledger: its id and chunks."""
    from include.nps import pipeline
    from tests.factories import wave_params

    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    params = wave_params(write_contacts(home / "contacts.csv", size), name="scale-send", start=start)
    wave_id = pipeline.plan_wave(params)["wave_id"]
    pipeline.build_audience(wave_id)
    return wave_id, pipeline.prepare_mailing(wave_id, KIND)


# -- the runs, each in a child process ------------------------------------------------------------


STEPS = (  # (module, attribute, label): the product's steps, timed by wrappers; absent ones skipped
    ("include.nps.delivery.outbox", "_render", "render (all)"),
    ("include.nps.wave.mailings", "survey_links", "  signed links"),
    ("include.nps.core.email_stencils", "render_email", "  templates (stencils)"),
    ("include.nps.core.emails", "render_email", "  templates (Jinja per contact)"),
    ("include.nps.core.fast_mime", "build_wire", "  MIME (wire bytes)"),
    ("include.nps.core.emails", "build_mime", "  MIME (email package)"),
    ("include.nps.delivery.transports", "SmtpTransport.send", "transport.send (SMTP)"),
    ("include.nps.delivery.outbox", "_record_and_claim", "ledger: record + claim (one commit)"),
)


class Stopwatch:
    """Wall and CPU seconds (this thread's) spent in wrapped functions, by label."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        import functools

        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.wall[label] += time.perf_counter() - wall
                self.cpu[label] += time.thread_time() - cpu
                self.calls[label] += 1

        setattr(owner, name, timed)
        self.labels.append(label)


TOP_STEPS = ("render (all)", "transport.send (SMTP)", "ledger: record + claim (one commit)")


def _breakdown() -> Stopwatch:
    """Timing wrappers around the product's steps (this version's: the benchmark also runs on the
    code before this work, for the figures before)."""
    import importlib

    watch = Stopwatch()
    for module_name, attribute, label in STEPS:
        try:
            owner: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        if hasattr(owner, name) and not (label.endswith("(Jinja per contact)") and _has_stencils()):
            watch.wrap(owner, name, label)
    return watch


def _has_stencils() -> bool:
    import importlib.util

    return importlib.util.find_spec("include.nps.core.email_stencils") is not None


def _relaxed_commits() -> None:
    """What if each commit were not flushed to disk: SQLite's `synchronous=NORMAL` in WAL mode,
    PostgreSQL's `synchronous_commit=off` (a killed task loses nothing; a power cut, or a crash of
    the database's machine, may lose the last commits). Only for the figures: not shipped."""
    from sqlalchemy import event

    from include.nps.core import storage

    make_engine = storage.make_engine

    def relaxed(url: str) -> Any:
        engine = make_engine(url)
        setting = "PRAGMA synchronous = NORMAL" if url.startswith("sqlite") else "SET synchronous_commit = off"

        def on_connect(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(setting)
            cursor.close()
            dbapi_connection.commit()

        event.listen(engine, "connect", on_connect)
        return engine

    storage.make_engine = relaxed


def product_run(wave_id: str, chunks: list[int], relaxed: bool = False, profile: str | None = None) -> dict[str, Any]:
    """`pipeline.send_mailing_chunk` over `chunks`: wall and CPU seconds, outcome, breakdown."""
    if relaxed:
        _relaxed_commits()
    from include.nps import pipeline

    pipeline.send_mailing_chunk(wave_id, KIND, -1)  # imports and first connections, as a worker has them
    watch = _breakdown()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    totals: Counter[str] = Counter()
    started, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        totals.update(pipeline.send_mailing_chunk(wave_id, KIND, chunk))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    steps = {label: (watch.wall[label], watch.cpu[label]) for label in watch.labels if watch.calls[label]}
    return {"seconds": seconds, "cpu": cpu, "totals": dict(totals), "steps": steps, "stencils": _stencil_counts()}


def _stencil_counts() -> dict[str, int]:
    """How the emails were rendered: from a stencil, or in full (the first of each variant)."""
    if not _has_stencils():
        return {}
    from include.nps.core import email_stencils

    return dict(email_stencils.STENCILS.counts)


def raw_run(port: int, size: int, template: bytes, sender: str) -> dict[str, Any]:
    """One session, `sendmail` of an f-string message per contact (`template` with {address} and {n})."""
    text = template.decode("ascii")
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as session:
        for n in range(size):
            address = f"raw{n}@a{n // 25}.example"
            session.sendmail(sender, [address], text.format(address=address, n=n).encode("ascii"))
    return {"seconds": time.perf_counter() - started}


def raw_email_message_run(port: int, size: int) -> dict[str, Any]:
    """One session, a small `EmailMessage` per contact (bench_delivery's plain loop)."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as session:
        for n in range(size):
            message = EmailMessage()
            message["From"] = "cs@vendor.example"
            message["To"] = f"raw{n}@a{n // 25}.example"
            message["Subject"] = "How likely are you to recommend Acme Cloud?"
            message.set_content(f"Hello Person {n},\n\nPlease answer: https://survey.example/s/{n}\n")
            session.send_message(message)
    return {"seconds": time.perf_counter() - started}


def raw_template(sample: bytes) -> bytes:
    """One product message as an f-string template: its To and Message-ID per contact."""
    lines = []
    for line in sample.replace(b"{", b"{{").replace(b"}", b"}}").split(b"\r\n"):
        if line.lower().startswith(b"to: "):
            line = b"To: {address}"
        elif line.lower().startswith(b"message-id: "):
            line = b"Message-ID: <raw.{n}@vendor.example>"
        lines.append(line)
    return b"\r\n".join(lines)


def resend_all(wave_id: str) -> dict[str, Any]:
    """The mailing's rows pending again, for a second run (setup, untimed)."""
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine

    storage.execute(
        nps_engine(),
        "UPDATE outbox SET status = 'pending', attempts = 0, message_id = NULL, sent_at = NULL WHERE wave_id = :w",
        {"w": wave_id},
    )
    return {}


# -- measure ------------------------------------------------------------------------------------


def setup(home: str, size: int, db: str) -> dict[str, Any]:
    """In a child process (the parent stays small, so its children's peak RSS is their own): the
    NPS DB (SQLite in `home`, or a new database on the PostgreSQL server `db`) and the prepared wave."""
    configure(Path(home), None if db == "sqlite" else fresh_database(db))
    started = time.perf_counter()
    wave_id, chunks = prepare_wave(Path(home), size)
    return {
        "wave_id": wave_id,
        "chunks": chunks,
        "db_url": os.environ.get("NPS_DB_URL"),
        "setup": time.perf_counter() - started,
    }


def _row(
    step: str,
    seconds: float | None,
    rss: float | None = None,
    plain: float | None = None,
    plain_rss: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "step": step,
        "seconds": seconds,
        "peak_rss_mib": rss,
        "plain_seconds": plain,
        "plain_rss_mib": plain_rss,
        "note": note,
    }


def measure(size: int, db: str = "sqlite", extra_runs: bool = True, profile: str | None = None) -> list[dict]:
    """Send `size` invitations through the product's path and the plain loops, to one sink; rows of
    {step, seconds, peak_rss_mib, plain_seconds, plain_rss_mib} (None where a side has no figure).
    `db`: "sqlite", "pg" (a throwaway PostgreSQL cluster) or a PostgreSQL server's URL.
    `extra_runs`: the product again to a sink without PIPELINING, and with commits not flushed."""
    if db == "pg":
        with postgres() as server:
            return _measure(size, server, extra_runs, profile)
    return _measure(size, db, extra_runs, profile)


def _measure(size: int, db: str, extra_runs: bool, profile: str | None) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="nps-scale-send-"))
    extra: dict[str, dict[str, Any]] = {}
    try:
        prepared = in_child(setup, str(home), size, db)
        configure(home, prepared["db_url"])
        wave_id, chunks = prepared["wave_id"], prepared["chunks"]
        with Sink() as sink:
            os.environ["AIRFLOW_CONN_NPS_SMTP"] = sink.connection_uri()
            product = in_child(product_run, wave_id, chunks, False, profile)
            took = sink.take()
            raw = in_child(raw_run, sink.port, size, raw_template(took["sample"][0]), "cs@vendor.example")
            raw_took = sink.take()
            small = in_child(raw_email_message_run, sink.port, size)
            sink.take()
            if extra_runs:
                sink.offer_pipelining(False)
                in_child(resend_all, wave_id)
                extra["  the product to a server without PIPELINING"] = in_child(product_run, wave_id, chunks)
                sink.offer_pipelining(True)
                in_child(resend_all, wave_id)
                extra["  what if commits were not flushed (not shipped)"] = in_child(product_run, wave_id, chunks, True)
                sink.take()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    _check_sample(took["sample"])
    return _rows(size, len(chunks), prepared, product, raw, small, extra, took, raw_took)


def _rows(
    size: int,
    chunks: int,
    prepared: dict[str, Any],
    product: dict[str, Any],
    raw: dict[str, Any],
    small: dict[str, Any],
    extra: dict[str, dict[str, Any]],
    took: dict[str, Any],
    raw_took: dict[str, Any],
) -> list[dict]:
    rows = [
        _row(
            f"send {size} invitations, {chunks} chunks: product vs raw loop",
            product["seconds"],
            product["peak_rss_mib"],
            raw["seconds"],
            raw["peak_rss_mib"],
        ),
        _row(
            "  the same vs raw loop of small EmailMessages",
            product["seconds"],
            product["peak_rss_mib"],
            small["seconds"],
            small["peak_rss_mib"],
        ),
    ]
    for label, run in extra.items():
        rows.append(_row(label, run["seconds"], run["peak_rss_mib"], raw["seconds"], raw["peak_rss_mib"]))
    cpu_note = f"{product['cpu'] / size * 1000:.2f} ms CPU a message; the plain column below: each step's CPU seconds"
    rows.append(_row("  the product's CPU seconds (its process)", product["cpu"], note=cpu_note))
    rows += [_row(f"  {label}", wall, plain=cpu) for label, (wall, cpu) in product["steps"].items()]
    accounted = sum(product["steps"].get(label, (0.0, 0.0))[0] for label in TOP_STEPS)
    rows.append(_row("  other (task setup, page reads, the loop)", product["seconds"] - accounted))
    rows.append(_row("  the sink's CPU seconds (product | raw loop)", took["cpu"], plain=raw_took["cpu"]))
    note = (
        f"sink took {took['messages']} product messages ({took['bytes'] / max(took['messages'], 1):.0f} B each, "
        f"{took['duplicates']} duplicates) and {raw_took['messages']} raw ones "
        f"({raw_took['bytes'] / max(raw_took['messages'], 1):.0f} B each); outcome {product['totals']}; "
        f"setup (plan, audience, ledger) {prepared['setup']:.0f} s; emails {product['stencils'] or 'rendered in full'}"
    )
    rows.append(_row("  what the sink took", None, note=note))
    return rows


def _check_sample(sample: list[bytes]) -> None:
    """The product's messages as the sink took them parse, with the headers every invitation has."""
    from email import policy
    from email.parser import BytesParser

    for body in sample:
        message = BytesParser(policy=policy.default).parsebytes(body)
        missing = [h for h in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe") if not message[h]]
        if missing or not message.is_multipart():
            raise RuntimeError(f"a product message lacks {missing or 'its parts'}:\n{body[:2000]!r}")


def print_rows(rows: list[dict]) -> None:
    """Seconds and peak RSS of the product beside the plain loop's, and the product's speed as a
    share of the plain loop's (plain seconds / product seconds: 1.00x is as fast)."""

    def figure(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    print(f"{'step':<62} {'s':>8} {'MiB':>6} {'plain s':>8} {'MiB':>6} {'speed':>7}")
    for row in rows:
        ratio = ""
        if row["seconds"] and row["plain_seconds"] and row["peak_rss_mib"] is not None:
            ratio = f"{row['plain_seconds'] / row['seconds']:.2f}x"
        rss, plain_rss = figure(row["peak_rss_mib"])[:-3], figure(row["plain_rss_mib"])[:-3]
        seconds, plain = figure(row["seconds"]), figure(row["plain_seconds"])
        print(f"{row['step']:<62} {seconds:>8} {rss:>6} {plain:>8} {plain_rss:>6} {ratio:>7}")
        if row.get("note"):
            print(f"      {row['note']}")


def main(argv: list[str] | None = None) -> None:
    """`python -m benchmarks.scale_send [N] [sqlite|pg|POSTGRES_URL] [quick] [PROFILE_FILE]`."""
    args = sys.argv[1:] if argv is None else argv
    size = int(args[0]) if args else 10000
    db = args[1] if len(args) > 1 else "sqlite"
    quick = "quick" in args[2:]
    profile = next((arg for arg in args[2:] if arg != "quick"), None)
    where = "SQLite (WAL, synchronous=FULL: each commit synced)" if db == "sqlite" else "PostgreSQL (fsync on)"
    print(f"scale_send: {size} invitations, NPS DB {where}; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    started = time.perf_counter()
    rows = measure(size, db, not quick, profile)
    print_rows(rows)
    first = rows[0]
    print(f"product {size / first['seconds']:.0f} msg/s; raw sendmail loop {size / first['plain_seconds']:.0f} msg/s")
    print(f"total {time.perf_counter() - started:.0f} s (machine shared: figures vary from run to run)")


if __name__ == "__main__":
    main()
