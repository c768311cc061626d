"""Benchmark: the email delivery engine at N messages, killed mid-send, and beside a raw smtplib loop.

Prints figures; asserts nothing. `make bench-delivery` (or `python -m benchmarks.bench_delivery N K`),
on the embedded SQLite NPS DB in a temp NPS_HOME:

1. Faults and kills: N invitations (one chunk per 500, the wave's default `chunk_size`) to a
   fault-injecting SMTP server on loopback (`tests.faulty_smtp`: 10% greylisted at RCPT, ~7% at
   DATA, 4% unknown users, ~3% accepted then dropped before the 250; each DATA reply 10 ms late,
   so a kill lands mid-transaction). Each chunk's send task (`pipeline.send_mailing_chunk`) runs
   as a child process (`tests.crash_sender`); K of them, spread over the chunks, are SIGKILLed
   mid-send; then every chunk is retried until done, the deferred rows' retry time made to come
   between tries. Then the ledger is compared with what the server holds, row by row, against the
   guarantees of the crash test (tests/test_delivery_crash.py), which the figures show, not assert.
2. Send rate: the product's path (`pipeline.send_mailing_chunk` for every chunk, in this process:
   template stencils, signed links, wire bytes, one ledger commit per message) and a data
   engineer's plain loop (one `smtplib.SMTP` session, an f-string `EmailMessage` per contact), both
   to one clean local SMTP server, and where the product's time goes (timing wrappers around its
   steps). `benchmarks/scale_send.py` measures the same at scale, to a faster sink, with CPU time.

Chunks run one after another (Airflow would run them side by side, up to the `nps_email` pool),
so the wall time of (1) is the serial sum: about 5 minutes at 10000 messages on 2 cores (a third
of it the server's 10 ms per DATA, a third the 2 s start of each try's process); (2) about 2 more.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import random
import shutil
import smtplib
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

KIND = "invitation"
DELAY = 0.01  # seconds before each DATA reply in (1): a kill then lands mid-transaction
FAULTS = ((10, 3, "grey"), (15, 7, "greydata"), (25, 11, "nouser"), (37, 5, "acceptdrop"))  # (every, at, fault)
KILL_AFTER = (10, 40)  # a killed try dies after the server saw this many more recipients (at random)
TRY_LIMIT = 10  # tries of one chunk after its kills before the benchmark gives up on it


def configure(home: Path) -> None:
    """Airflow's settings and the NPS DB's home, as tests/conftest.py sets them, before any import."""
    from devkit.localrun import configure_airflow

    configure_airflow(home / "airflow")
    os.environ.update({"NPS_HOME": str(home / "nps"), "NPS_SECRET_KEY": "bench"})
    for name in ("NPS_SECRET_KEY_PREVIOUS", "NPS_DB_URL", "AIRFLOW_CONN_NPS_DB"):
        os.environ.pop(name, None)


def use_nps_home(path: Path) -> None:
    os.environ["NPS_HOME"] = str(path)


def faulty_address(n: int) -> str:
    for every, at, name in FAULTS:
        if n % every == at:
            return f"{name}-{n}@a{n // 25}.example"
    return f"c{n}@a{n // 25}.example"


def prepare_wave(folder: Path, name: str, prefix: str, messages: int, address: Callable[[int], str]) -> str:
    """A planned wave whose invitation to `messages` contacts is in the ledger; its wave id."""
    from include.nps import pipeline
    from tests.factories import contact, wave_params, write_csv

    rows = [contact(f"{prefix}{n:06d}", account=f"A{n // 25}", email=address(n)) for n in range(messages)]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plan = pipeline.plan_wave(wave_params(write_csv(folder / f"{name}.csv", rows), name=name, start=start))
    pipeline.build_audience(plan["wave_id"])
    pipeline.prepare_mailing(plan["wave_id"], KIND)
    return plan["wave_id"]


def chunks_of(wave_id: str) -> list[int]:
    from include.nps.core.connections import nps_engine
    from include.nps.delivery import outbox

    return outbox.chunks(nps_engine(), wave_id, KIND)


def time_passes() -> None:
    """The deferred messages' retry time comes (the benchmark does not wait minutes for it)."""
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine

    storage.execute(nps_engine(), "UPDATE outbox SET next_attempt_at = NULL WHERE status = 'pending'")


def kill_plan(chunks: list[int], kills: int) -> Counter[int]:
    """How many tries of each chunk are killed: `kills` spread evenly over the chunks."""
    return Counter(chunks[k * len(chunks) // kills] for k in range(kills)) if chunks else Counter()


class Run:
    """Tries of the chunks' send tasks as child processes, killed or run to the end."""

    def __init__(self, wave_id: str, server: Any, seed: int = 17) -> None:
        self.wave_id = wave_id
        self.server = server
        self.rng = random.Random(seed)
        self.tries = 0
        self.kills = 0
        self.missed_kills = 0  # tries meant to be killed that ended first

    def kill_once(self, chunk: int) -> bool:
        """One try of `chunk` SIGKILLed mid-send; True when the chunk is done (the try ended first)."""
        from tests.crash_sender import kill_mid_send, start_try

        process = start_try(self.wave_id, KIND, chunk)
        self.tries += 1
        killed = kill_mid_send(process, self.server.spool.tries, after=self.rng.randint(*KILL_AFTER))
        process.communicate()
        self.kills += killed
        self.missed_kills += not killed
        time_passes()
        return not killed and process.returncode == 0

    def until_done(self, chunk: int) -> None:
        """Airflow's retries of one chunk: new tries until one succeeds."""
        from tests.crash_sender import start_try

        for _ in range(TRY_LIMIT):
            process = start_try(self.wave_id, KIND, chunk)
            _, stderr = process.communicate(timeout=600)
            self.tries += 1
            if process.returncode == 0:
                return
            if process.returncode != 3:
                raise RuntimeError(f"chunk {chunk} failed:\n{stderr.decode()[-2000:]}")
            time_passes()
        raise RuntimeError(f"chunk {chunk} did not finish in {TRY_LIMIT} tries")


def run_with_kills(wave_id: str, server: Any, kills: int) -> tuple[Run, float]:
    run = Run(wave_id, server)
    started = time.perf_counter()
    chunks = chunks_of(wave_id)
    planned = kill_plan(chunks, kills)
    for chunk in chunks:
        done = False
        for _ in range(planned[chunk]):
            done = run.kill_once(chunk)
            if done:
                break
        if not done:
            run.until_done(chunk)
    return run, time.perf_counter() - started


def server_copies(folder: Path) -> dict[str, list[str]]:
    """address: the Message-ID of each copy the server holds (headers only: fast at 10k files)."""
    parser = BytesParser(policy=policy.default)
    copies: dict[str, list[str]] = defaultdict(list)
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as eml:
            headers = parser.parse(eml, headersonly=True)
        copies[str(headers["To"])].append(str(headers["Message-ID"]))
    return copies


def ledger(wave_id: str) -> dict[str, dict[str, Any]]:
    from include.nps.core import storage
    from include.nps.core.connections import nps_engine

    rows = storage.fetch_all(
        nps_engine(),
        "SELECT o.address, o.status, o.attempts, o.doubts, o.last_error, o.message_id, c.bounced_at "
        "FROM outbox o JOIN contacts c ON c.contact_id = o.recipient WHERE o.wave_id = :w AND o.kind = :k",
        w=wave_id,
        k=KIND,
    )
    return {row["address"]: row for row in rows}


def audit(rows: dict[str, dict[str, Any]], copies: dict[str, list[str]], rcpt: Counter[str]) -> dict[str, str]:
    """The crash test's guarantees, counted instead of asserted."""
    from tests.faulty_smtp import fault

    received = Counter({address: len(ids) for address, ids in copies.items()})
    in_doubt = sum(row["doubts"] for row in rows.values())
    by_fault = {name: [a for a in rows if fault(a) == name] for name in ("grey", "greydata", "nouser", "acceptdrop")}
    extra = {a: received[a] - 1 for a in rows if received[a] > 1}
    from_doubt = {a: n for a, n in extra.items() if fault(a) != "acceptdrop"}
    unexplained = [  # more copies than one, plus one per doubt, plus one for a server that took it then hung up
        a for a in rows if received[a] > 1 + rows[a]["doubts"] + (fault(a) == "acceptdrop")
    ]
    written_off = [r for r in rows.values() if r["status"] == "failed" and "interrupted" in (r["last_error"] or "")]
    transient = by_fault["grey"] + by_fault["greydata"]
    delivered_4xx = [a for a in transient if received[a] >= 1 and rows[a]["bounced_at"] is None]
    refused_5xx = [
        a
        for a in by_fault["nouser"]
        if received[a] == 0
        and rows[a]["bounced_at"] is not None
        and "550 5.1.1" in (rows[a]["last_error"] or "")
        and rcpt[a] == 1 + rows[a]["doubts"]
    ]
    dropped = by_fault["acceptdrop"]
    dropped_ok = [a for a in dropped if rows[a]["status"] == "sent" and 1 <= received[a] <= 2 + rows[a]["doubts"]]
    mismatched = [
        a
        for a, r in rows.items()
        if (r["status"] == "sent" and set(copies.get(a, [])) != {r["message_id"]})
        or (r["status"] != "sent" and copies.get(a))
    ]
    strangers = [a for a in copies if a not in rows]
    return {
        "statuses": str(dict(Counter(r["status"] for r in rows.values()))),
        "in doubt (sum of doubts)": f"{in_doubt}",
        "duplicates (addresses, extra copies)": f"{len(extra)}, {sum(extra.values())}",
        "  at accepted-then-dropped addresses": f"{sum(1 for a in extra if a not in from_doubt)}",
        "  elsewhere (only a doubt explains them)": f"{len(from_doubt)}",
        "  not explained by acceptdrop or doubts": f"{len(unexplained)}" + _examples(unexplained),
        "never-tried written off": f"{len(written_off)}" + _examples([r["address"] for r in written_off]),
        "4xx delivered, none bounced": f"{len(delivered_4xx)} of {len(transient)}",
        "5xx recorded+suppressed+not retried": f"{len(refused_5xx)} of {len(by_fault['nouser'])}",
        "acceptdrop sent, 1..2+doubts copies": f"{len(dropped_ok)} of {len(dropped)}",
        "ledger vs server mismatches (rows)": f"{len(mismatched)}" + _examples(mismatched),
        "copies to addresses not in ledger": f"{len(strangers)}",
    }


def _examples(addresses: list[str]) -> str:
    return f"  e.g. {', '.join(addresses[:3])}" if addresses else ""


def faults_and_kills(home: Path, messages: int, kills: int) -> None:
    from tests.faulty_smtp import FaultyServer

    print(f"1. faults and kills: {messages} invitations, {kills} kills, DATA replies {DELAY * 1000:.0f} ms late")
    server = FaultyServer(home / "mail-faulty", delay=DELAY)
    server.start()
    try:
        os.environ["AIRFLOW_CONN_NPS_SMTP"] = server.connection_uri()
        started = time.perf_counter()
        wave_id = prepare_wave(home, "bench-faults", "C", messages, faulty_address)
        chunks = chunks_of(wave_id)
        print(f"   setup (plan, audience, ledger): {time.perf_counter() - started:.1f} s, {len(chunks)} chunks")
        run, seconds = run_with_kills(wave_id, server, kills)
    finally:
        server.stop()
    started = time.perf_counter()
    figures = {
        "messages": f"{messages}",
        "chunks": f"{len(chunks)}",
        "kills (tries that ended before)": f"{run.kills} ({run.missed_kills})",
        "tries (child processes)": f"{run.tries}",
        **audit(ledger(wave_id), server_copies(server.spool.folder), server.spool.tries),
        "wall time, tries only": f"{seconds:.1f} s ({messages / seconds:.0f} msg/s)",
    }
    print_table(figures)
    print(f"   (audit of ledger and server: {time.perf_counter() - started:.1f} s)")


def print_table(figures: dict[str, str]) -> None:
    width = max(len(label) for label in figures)
    for label, value in figures.items():
        print(f"   {label:<{width}}  {value}")


class Stopwatch:
    """Seconds and calls spent in wrapped functions, by label."""

    def __init__(self) -> None:
        self.labels: list[str] = []  # in the order wrapped
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        setattr(owner, name, timed)
        self.labels.append(label)
        self._undo.append((owner, name, original))

    def unwrap(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def product_steps() -> Stopwatch:
    """Timing wrappers around the steps of the product's send path."""
    from include.nps.core import email_stencils, fast_mime
    from include.nps.delivery import outbox, transports
    from include.nps.wave import mailings

    watch = Stopwatch()
    watch.wrap(outbox, "_render", "render (all)")
    watch.wrap(mailings, "survey_links", "  signed links")
    watch.wrap(email_stencils, "render_email", "  templates (stencils)")
    watch.wrap(fast_mime, "build_wire", "  MIME (wire bytes)")
    watch.wrap(transports.SmtpTransport, "send", "transport.send (SMTP)")
    watch.wrap(outbox, "_record_and_claim", "ledger: record + claim")
    return watch


def product_rate(wave_id: str) -> tuple[float, Stopwatch]:
    from include.nps import pipeline

    watch = product_steps()
    started = time.perf_counter()
    try:
        for chunk in chunks_of(wave_id):
            pipeline.send_mailing_chunk(wave_id, KIND, chunk)
    finally:
        watch.unwrap()
    return time.perf_counter() - started, watch


def raw_rate(port: int, addresses: list[str]) -> float:
    """What a data engineer would write: one session, an f-string message per contact."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as session:
        for n, address in enumerate(addresses):
            message = EmailMessage()
            message["From"] = "cs@vendor.example"
            message["To"] = address
            message["Subject"] = "How likely are you to recommend Acme Cloud?"
            message.set_content(f"Hello Person {n},\n\nPlease answer: https://survey.example/s/{n}\n")
            session.send_message(message)
    return time.perf_counter() - started


def send_rate(home: Path, messages: int) -> None:
    from devkit.servers import SmtpServer

    print(f"\n2. send rate: {messages} messages to a clean local SMTP server, no faults, no delay")
    use_nps_home(home / "nps-rate")
    with SmtpServer(home / "mail-clean") as server:
        os.environ["AIRFLOW_CONN_NPS_SMTP"] = server.connection_uri()
        started = time.perf_counter()
        wave_id = prepare_wave(home, "bench-rate", "R", messages, lambda n: f"r{n}@a{n // 25}.example")
        print(f"   setup (plan, audience, ledger): {time.perf_counter() - started:.1f} s")
        product, watch = product_rate(wave_id)
        raw = raw_rate(server.port, [f"raw{n}@a{n // 25}.example" for n in range(messages)])
        held = len(list((home / "mail-clean").glob("*.eml")))
    print(f"   {'path':<44} {'s':>7} {'msg/s':>7} {'ms/msg':>7}")
    for label, seconds in (("product: pipeline.send_mailing_chunk", product), ("raw smtplib loop", raw)):
        print(f"   {label:<44} {seconds:>7.1f} {messages / seconds:>7.0f} {seconds / messages * 1000:>7.2f}")
    print(f"   ratio product / raw (msg/s): {raw / product:.2f}   server holds {held} messages")
    print(f"\n   where the product's time goes ({product:.1f} s):")
    print(f"   {'step':<30} {'s':>7} {'share':>6} {'calls':>7}")
    for label in watch.labels:
        seconds = watch.seconds[label]
        print(f"   {label:<30} {seconds:>7.1f} {seconds / product:>6.0%} {watch.calls[label]:>7}")
    top = ("render (all)", "transport.send (SMTP)", "ledger: record + claim")
    other = product - sum(watch.seconds[label] for label in top)
    print(f"   {'other (task setup, page reads)':<30} {other:>7.1f} {other / product:>6.0%}")


def main(messages: int = 10000, kills: int = 10) -> None:
    home = Path(tempfile.mkdtemp(prefix="nps-bench-delivery-"))  # about 300 MB at 10000: removed at the end
    configure(home)
    print(f"NPS_HOME under {home}; python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    started = time.perf_counter()
    try:
        faults_and_kills(home, messages, kills)
        send_rate(home, messages)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
