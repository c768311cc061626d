"""Local stand-ins for the embedded default: an SMTP server that keeps every message as an
`.eml` file, a chat webhook that keeps every post, and the survey form, all on loopback.

Used by `make demo` and by the tests; a real deployment uses real servers through the same
Airflow connections.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REJECTED_LOCAL_PART = "bounce"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailSpool:
    """aiosmtpd handler: one `.eml` file per (message, recipient); `bounce*@` is refused (550)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = len(list(folder.glob("*.eml")))

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        if address.split("@")[0].lower().startswith(REJECTED_LOCAL_PART):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            with self._lock:
                self._count += 1
                path = self.folder / f"{self._count:06d}-{rcpt.replace('@', '_at_')}.eml"
            path.write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        return [read_eml(p) for p in sorted(self.folder.glob("*.eml"))]


def read_eml(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)


class SmtpServer:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.spool = MailSpool(folder)
        self.port = port or free_port()
        self._controller = Controller(self.spool, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()

    def connection_uri(self) -> str:
        extra = {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 0}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


class ChatSink:
    """A chat incoming webhook that appends every JSON post to a `.jsonl` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.path.open("a", encoding="utf-8") as out:
                    out.write(body.decode() + "\n")
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self._server.server_address[1]

    def __enter__(self) -> ChatSink:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()

    def connection_uri(self) -> str:
        return json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{self.port}/hooks/nps"})

    def posts(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


class SurveyServer:
    """The survey form app served by uvicorn in a background thread."""

    def __init__(self, engine: Any, settings: Any = None, port: int | None = None, answer_events: Any = None) -> None:
        import uvicorn

        from include.nps.web.survey_form import create_app

        self.port = port or free_port()
        self.app = create_app(engine, settings, answer_events)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SurveyServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("survey form did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.app.state.answer_events.close()
