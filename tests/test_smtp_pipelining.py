"""Wire messages over a server that offers PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write,
against the fault-injecting aiosmtpd server of tests/test_smtp_replies.py made to offer it. Every
reply is classified as without pipelining, a 421 or a dropped connection opens a new session for
the rest of the batch, and what arrives is the message as written, a leading dot included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.servers import free_port
from include.nps.core import fast_mime
from include.nps.core.emails import RenderedEmail
from include.nps.core.fast_mime import WireMessage
from include.nps.delivery import outbox, transports
from include.nps.delivery.transports import PermanentFailure, SmtpTransport, TransientFailure
from tests.factories import contact, planned_wave, write_csv
from tests.faulty_smtp import FaultySpool


class PipeliningSpool(FaultySpool):
    """FaultySpool's answers, from a server that offers PIPELINING."""

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list) -> list:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class PipeliningServer:
    def __init__(self, folder: Path) -> None:
        from aiosmtpd.controller import Controller

        self.spool = PipeliningSpool(folder)
        self.port = free_port()
        self.controller = Controller(self.spool, hostname="127.0.0.1", port=self.port)

    def connection_uri(self) -> str:
        extra = {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 0}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipeliningServer]:
    pipelining = PipeliningServer(tmp_path / "mail")
    pipelining.controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", pipelining.connection_uri())
    yield pipelining
    pipelining.controller.stop()


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The recipients of each message sent pipelined."""
    sent: list[str] = []
    original = transports.pipelined_sendmail

    def counted(client: Any, sender: str, recipients: tuple[str, ...], data: bytes) -> Any:
        sent.extend(recipients)
        return original(client, sender, recipients, data)

    monkeypatch.setattr(transports, "pipelined_sendmail", counted)
    return sent


def _wire(address: str, sender: str = "cs@vendor.example", text: str = "hello\n") -> WireMessage:
    email = RenderedEmail(to=address, subject="hello", text=text, html=f"<p>{text}</p>")
    wire = fast_mime.build_wire(email, sender, f"<{address.replace('@', '.')}@vendor.example>")
    assert isinstance(wire, WireMessage)
    return wire


@pytest.mark.parametrize(
    ("local", "failure", "bounce"),
    [
        ("grey", TransientFailure, None),  # 451 at RCPT
        ("greydata", TransientFailure, None),  # 451 after the content
        ("nouser", PermanentFailure, True),  # 550 5.1.1 at RCPT
        ("plain", PermanentFailure, True),  # 550 with no enhanced code at RCPT
        ("norelay", PermanentFailure, False),  # 550 5.7.1: policy, the address may be fine
        ("policy", PermanentFailure, False),  # 554 5.7.1 after the content
        ("shutdown", TransientFailure, None),  # 421 at RCPT
        ("cut", TransientFailure, None),  # connection dropped after the content
        ("mailgrey", TransientFailure, None),  # 451 at MAIL
        ("mailbad", PermanentFailure, False),  # 553 5.1.8 at MAIL: the sender is refused
    ],
)
def test_each_pipelined_reply_is_classified_as_without_pipelining(server, pipelined, local, failure, bounce):
    with SmtpTransport() as transport:
        with pytest.raises((PermanentFailure, TransientFailure)) as raised:
            transport.send(_wire(f"{local}@a1.example", sender=f"{local}@vendor.example"))
        assert type(raised.value) is failure
        if bounce is not None:
            assert raised.value.bounce is bounce
        transport.send(_wire("after@a1.example"))  # the session (or a new one) takes the next message
    assert pipelined[0] == f"{local}@a1.example"
    assert [m["To"] for m in server.spool.messages()] == ["after@a1.example"]


def test_a_pipelined_message_arrives_as_written(server, pipelined):
    text = ".\n.. a line of dots\n.\nand the end\n"
    with SmtpTransport() as transport:
        transport.send(_wire("c1@a1.example", text=text))
    [received] = server.spool.messages()
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert received["Message-ID"] == "<c1.a1.example@vendor.example>" and pipelined == ["c1@a1.example"]


@pytest.fixture
def wave(engine, tmp_path):
    from include.nps.wave import audience

    path = write_csv(tmp_path / "c.csv", [contact(f"C{n}") for n in range(1, 5)])
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    return wave


@pytest.mark.parametrize("local", ["shutdown", "cut"])
def test_after_a_lost_session_the_rest_of_the_batch_goes_over_a_new_one(engine, wave, server, pipelined, local):
    rows = [("C1", "c1@a1.example"), ("C2", f"{local}@a1.example"), ("C3", "c3@a1.example"), ("C4", "c4@a1.example")]
    outbox.enqueue(engine, wave.wave_id, "invitation", rows)
    with SmtpTransport() as transport, pytest.raises(outbox.DeliveryIncomplete):
        outbox.deliver(engine, wave.wave_id, "invitation", lambda row: _wire(row["address"]), transport)
    assert transport.sessions == 2 and pipelined == [address for _, address in rows]
    statuses = outbox.counts(engine, wave.wave_id)["invitation"]
    assert statuses == {"sent": 3, "pending": 1}
    assert sorted(m["To"] for m in server.spool.messages()) == ["c1@a1.example", "c3@a1.example", "c4@a1.example"]
