"""A fault-injecting SMTP server for the delivery tests and benchmark: a real aiosmtpd server on
loopback that answers the way misbehaving real servers do, chosen by the recipient's local part."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from devkit.servers import MailSpool, free_port

GREYLISTED = "451 4.7.1 Greylisted, try again later"
RCPT_REPLIES = {
    "nouser": "550 5.1.1 No such user",
    "plain": "550 Requested action not taken: mailbox unavailable",
    "norelay": "550 5.7.1 Relaying denied",
}


MAIL_REPLIES = {  # by the sender's local part
    "mailgrey": "451 4.3.1 Insufficient system storage",
    "mailbad": "553 5.1.8 Sender address rejected",
}


class FaultySpool(MailSpool):
    """Answers by the recipient's local part up to its first "-" (`grey-17@` is `grey`): `grey` 451
    at RCPT on the first try only, `greydata` 451 at DATA on the first try only, `nouser` 550 5.1.1,
    `plain` 550 with no enhanced code, `norelay` 550 5.7.1 at RCPT, `policy` 554 5.7.1 at DATA,
    `shutdown` 421 at RCPT then closes, `cut` drops the connection at DATA without a reply,
    `acceptdrop` keeps the message but drops the connection before its 250 (first try only);
    anyone else is accepted. At MAIL, by the sender's local part: `mailgrey` 451, `mailbad` 553
    5.1.8. Every DATA reply waits `delay` seconds (a slow server)."""

    def __init__(self, folder: Path, delay: float = 0.0) -> None:
        super().__init__(folder)
        self.delay = delay
        self.tries: Counter[str] = Counter()  # RCPT commands per address
        self.peers: dict[str, tuple] = {}  # the session (client address) each address last came in

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        local = address.split("@")[0]
        if local in MAIL_REPLIES:
            return MAIL_REPLIES[local]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        local = fault(address)
        self.tries[address] += 1
        self.peers[address] = session.peer
        if local == "grey" and self.tries[address] == 1:
            return GREYLISTED
        if local == "shutdown":
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service shutting down"
        if local in RCPT_REPLIES:
            return RCPT_REPLIES[local]
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        local = fault(envelope.rcpt_tos[0])
        if local == "acceptdrop" and self.tries[envelope.rcpt_tos[0]] == 1:
            await super().handle_DATA(server, session, envelope)  # kept: it will arrive twice
            server.transport.abort()
            return "250 never heard"
        if local == "greydata" and self.tries[envelope.rcpt_tos[0]] == 1:
            return "451 4.3.0 Temporary local problem, try again later"
        if local == "policy":
            return "554 5.7.1 Message rejected"
        if local == "cut":
            server.transport.abort()
            return "250 never heard"
        return await super().handle_DATA(server, session, envelope)


class FaultyServer:
    """A real aiosmtpd server on loopback answering through a `FaultySpool`."""

    def __init__(self, folder: Path, delay: float = 0.0) -> None:
        from aiosmtpd.controller import Controller

        self.spool = FaultySpool(folder, delay)
        self.port = free_port()
        self.controller = Controller(self.spool, hostname="127.0.0.1", port=self.port)
        self.running = False

    def start(self) -> None:
        self.controller.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False

    def connection_uri(self) -> str:
        extra = {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 0}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


def fault(address: str) -> str:
    """The fault an address asks for: its local part up to the first "-"."""
    return address.split("@")[0].split("-")[0]
