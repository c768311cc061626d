"""The NPS database goes away in the middle of a mailing (PostgreSQL behind a TCP proxy that drops
every connection and refuses new ones for a few seconds): the sender waits for it and goes on, and
every message is still sent once and recorded sent, none failed or in doubt."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from devkit.servers import free_port
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import audience
from tests.factories import contact, plain_email, planned_wave, write_csv
from tests.faulty_smtp import FaultyServer

pytestmark = pytest.mark.postgres
CONTACTS = 120
OUTAGE_SECONDS = 3.0


class CuttableProxy:
    """A TCP proxy on loopback to `upstream`; `cut(seconds)` closes every connection through it and
    refuses new ones for that long, as a database restart or a network cut does."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.port = upstream, free_port()
        self.down_until = 0.0
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, seconds: float) -> None:
        with self._lock:
            self.down_until = time.monotonic() + seconds
            self.cuts += 1
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def close(self) -> None:
        self.cut(0)
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self.down_until:
                _close(client)
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxied_engine(postgres_url):
    """A fresh, migrated NPS database on the session's PostgreSQL, reached through a CuttableProxy."""
    name = f"nps_{time.time_ns()}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttableProxy(("127.0.0.1", port))
    engine = storage.make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/{name}")
    storage.migrate(engine)
    yield engine, proxy
    engine.dispose()
    proxy.close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    faulty = FaultyServer(tmp_path / "mail", delay=0.01)
    faulty.start()
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", faulty.connection_uri())
    yield faulty
    faulty.stop()


def test_a_database_outage_mid_mailing_is_waited_out_and_nothing_is_lost_or_doubled(proxied_engine, server, tmp_path):
    engine, proxy = proxied_engine
    rows = [contact(f"C{n:03d}") for n in range(CONTACTS)]
    path = write_csv(tmp_path / "c.csv", rows)
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    outbox.enqueue(engine, wave.wave_id, "invitation", [(r["contact_id"], r["email"]) for r in rows])

    def cut_when_a_third_is_sent() -> None:
        while server.spool.tries.total() < CONTACTS // 3:
            time.sleep(0.005)
        proxy.cut(OUTAGE_SECONDS)

    cutter = threading.Thread(target=cut_when_a_third_is_sent, daemon=True)
    cutter.start()
    started = time.monotonic()
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, wave.wave_id, "invitation", plain_email, transport)
    elapsed = time.monotonic() - started
    cutter.join(timeout=5)

    received = Counter(m["To"] for m in server.spool.messages())
    assert proxy.cuts == 1 and elapsed >= OUTAGE_SECONDS  # the outage happened mid-mailing and was waited out
    assert (outcome.sent, outcome.failed, outcome.in_doubt) == (CONTACTS, 0, 0)
    assert outbox.counts(engine, wave.wave_id)["invitation"] == {"sent": CONTACTS}
    assert received == Counter({r["email"]: 1 for r in rows})
