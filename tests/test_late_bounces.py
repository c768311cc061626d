"""Late bounces and complaints: a real Dovecot IMAP server holding DSNs and abuse reports, and the
ESP webhooks served by the survey form's app (uvicorn on loopback). Each event is applied once, to
every later email, and linked to the email it is about."""

from __future__ import annotations

import base64
import getpass
import grp
import imaplib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devkit.servers import SurveyServer, free_port
from include.nps.core import emails, storage
from include.nps.delivery import bounce_events, bounce_mailbox, outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import audience
from include.nps.web import esp_webhooks
from tests.factories import contact, plain_email, planned_wave, write_csv

DOVECOT = Path("/usr/sbin/dovecot")
SENDER = "cs@vendor.example"
PASSWORD = "bounce-secret"


# -- the wave: three contacts, each sent an invitation with its stable Message-ID ---------------


def with_message_id(row: dict):
    email = plain_email(row)
    email["Message-ID"] = emails.message_id(SENDER, row["wave_id"], row["kind"], row["recipient"])
    return email


def sent_id(wave_id: str, contact_id: str, kind: str = "invitation") -> str:
    return emails.message_id(SENDER, wave_id, kind, contact_id)


def make_wave(engine, tmp_path, smtp):
    rows = [contact("C1"), contact("C2"), contact("C3"), contact("C4", email="Mixed.Case@A1.example")]
    path = write_csv(tmp_path / "c.csv", rows)
    wave = planned_wave(engine, path)
    audience.load_contacts(engine, wave.wave_id, path)
    recipients = [(r["contact_id"], r["email"]) for r in rows]
    outbox.enqueue(engine, wave.wave_id, "invitation", recipients)
    with SmtpTransport() as transport:
        sent = outbox.deliver(engine, wave.wave_id, "invitation", with_message_id, transport)
    assert sent.sent == 4
    return wave


@pytest.fixture
def wave(engine, tmp_path, smtp):
    return make_wave(engine, tmp_path, smtp)


def contact_state(engine, contact_id: str) -> dict:
    return storage.fetch_one(
        engine, "SELECT bounced_at, opted_out_at FROM contacts WHERE contact_id = :c", c=contact_id
    )


def events(engine) -> list[dict]:
    return storage.fetch_all(
        engine,
        "SELECT source, event, address, message_id, wave_id, kind, recipient, status FROM delivery_events"
        " ORDER BY address",
    )


# -- reports as mail servers and mailbox providers write them ----------------------------------


def dsn(
    recipient: str,
    message_id: str,
    status: str = "5.1.1",
    action: str = "failed",
    report_id: str = "<dsn-1@mx.example>",
) -> bytes:
    """An RFC 3464 delivery status notification returning the headers of the email it is about."""
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.a1.example>
To: {SENDER}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 02 Mar 2026 10:00:00 +0100
Message-ID: {report_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.a1.example. Your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.a1.example
Arrival-Date: Mon, 02 Mar 2026 09:59:58 +0100

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; inbox.a1.example
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected

--BOUNDARY
Content-Type: text/rfc822-headers

From: {SENDER}
To: {recipient}
Subject: How likely are you to recommend Acme Cloud?
Message-ID: {message_id}

--BOUNDARY--
""".replace("\n", "\r\n").encode()


def arf(recipient: str | None, message_id: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 abuse report returning the whole email; `recipient` None: redacted, as some
    feedback loops do."""
    rcpt = f"Original-Rcpt-To: {recipient}\r\n" if recipient else ""
    return f"""From: Feedback Loop <fbl@isp.example>
To: abuse@vendor.example
Subject: Abuse report
Date: Tue, 03 Mar 2026 08:00:00 +0000
Message-ID: <arf-{message_id.strip("<>")}@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="PART"

--PART
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.1.

--PART
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{SENDER}>
{rcpt}Arrival-Date: Tue, 03 Mar 2026 07:59:00 +0000
Source-IP: 192.0.2.1

--PART
Content-Type: message/rfc822
Content-Disposition: inline

From: {SENDER}
To: {recipient or "redacted@isp.example"}
Subject: How likely are you to recommend Acme Cloud?
Message-ID: {message_id}

Hello

--PART--
""".replace("\n", "\r\n").encode()


GARBAGE = b"\x00\xff not a mail at all \r\n\r\n\x80\x81"
AUTO_REPLY = b"From: c9@a1.example\r\nTo: cs@vendor.example\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n"


# -- reports read without a mailbox ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("failed", "5.1.1", "bounce"),  # no such mailbox
        ("failed", "5.1.10", "bounce"),  # null MX
        ("failed", "5.1.1 (bad destination mailbox)", "bounce"),  # with a comment
        ("failed", "5.1.11", "other"),  # past the address problems is_bounce knows
        ("failed", "5.7.1", "other"),  # refused by policy: recorded, suppresses nothing
        ("failed", "5.2.2", "other"),  # mailbox full
        ("failed", "4.4.7", None),  # gave up on a transient failure
        ("delayed", "4.4.1", None),
        ("delivered", "2.0.0", None),
    ],
)
def test_a_dsn_is_a_bounce_only_for_a_failed_address(action, status, expected):
    found = bounce_mailbox.parse_report(dsn("c1@a1.example", "<m@vendor.example>", status, action))
    assert [e.event for e in found] == ([expected] if expected else [])
    if expected:
        assert found[0].address == "c1@a1.example" and found[0].message_id == "<m@vendor.example>"


def test_messages_that_are_no_report_are_refused_as_such():
    for raw in (GARBAGE, AUTO_REPLY, b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"):
        with pytest.raises(bounce_mailbox.NotAReport):
            bounce_mailbox.parse_report(raw)


def test_an_abuse_report_is_a_complaint_and_not_spam_is_not():
    assert [e.event for e in bounce_mailbox.parse_report(arf("c2@a1.example", "<m@v>"))] == ["complaint"]
    assert [e.event for e in bounce_mailbox.parse_report(arf("c2@a1.example", "<m@v>", "not-spam"))] == ["other"]


# -- a real IMAP server --------------------------------------------------------------------------


@dataclass
class Dovecot:
    port: int
    log: Path

    def connection(self, user: str, **extra) -> str:
        return json.dumps(
            {
                "conn_type": "imap",
                "host": "127.0.0.1",
                "port": self.port,
                "login": user,
                "password": PASSWORD,
                "extra": {"folder": "INBOX", "ssl": False, **extra},
            }
        )

    def client(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(user, PASSWORD)
        return imap

    def deliver(self, user: str, *raw: bytes) -> None:
        imap = self.client(user)
        for message in raw:
            status, data = imap.append("INBOX", None, None, message)
            assert status == "OK", data
        imap.logout()

    def count(self, user: str, folder: str = "INBOX", criterion: str = "ALL") -> int:
        imap = self.client(user)
        imap.select(folder)
        found = imap.search(None, criterion)[1][0].split()
        imap.logout()
        return len(found)


def _dovecot_config(root: Path, port: int) -> str:
    """A throwaway Dovecot: IMAP on loopback without TLS, any user with PASSWORD, maildirs in `root`.
    As root, mail is kept as `nobody` (Dovecot refuses uid 0); otherwise as the current user."""
    if os.geteuid() == 0:
        users = ""
        mail_user = ("nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name)
    else:
        me, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        users = f"default_internal_user = {me}\ndefault_internal_group = {group}\ndefault_login_user = {me}\n"
        users += "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n"
        mail_user = (me, group)
    return f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = nps-test-{port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
{users}passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={mail_user[0]} gid={mail_user[1]} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """Debian's Dovecot on a free loopback port, for this module's tests (one IMAP user per test)."""
    if not DOVECOT.exists():
        if os.environ.get("CI"):
            pytest.fail("Dovecot is not installed; .ci/run installs Debian's dovecot-imapd")
        pytest.skip("Dovecot not found (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="nps-dovecot-"))
    (root / "home").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root / "home", "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name)
        root.chmod(0o755)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_dovecot_config(root, port), encoding="utf-8")
    process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)])  # noqa: S603
    try:
        _wait_for_port(port, process, root / "dovecot.log")
        yield Dovecot(port, root / "dovecot.log")
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dovecot exited: {log.read_text() if log.exists() else 'no log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("dovecot did not start listening")


@pytest.fixture
def mailbox(dovecot, monkeypatch, request) -> str:
    """An empty bounce mailbox of its own, as the `nps_bounces` connection."""
    user = f"bounces-{request.node.name.split('[')[0][-40:]}-{time.time_ns()}"
    monkeypatch.setenv("AIRFLOW_CONN_NPS_BOUNCES", dovecot.connection(user))
    return user


def test_mailbox_bounces_and_complaints_are_applied_once_and_linked_to_their_email(engine, wave, dovecot, mailbox):
    c1, c2 = sent_id(wave.wave_id, "C1"), sent_id(wave.wave_id, "C2")
    dovecot.deliver(
        mailbox,
        dsn("c1@a1.example", c1),
        arf("c2@a1.example", c2),
        dsn("c3@a1.example", sent_id(wave.wave_id, "C3"), "4.4.1", "delayed", "<dsn-delayed@mx.example>"),
        GARBAGE,
    )

    first = bounce_mailbox.poll_bounce_mailbox(engine, "nps_bounces")

    assert {k: first[k] for k in ("read", "reports", "ignored", "unparseable")} == {
        "read": 4,
        "reports": 3,
        "ignored": 1,
        "unparseable": 1,
    }
    assert (first["bounced_contacts"], first["opted_out_contacts"], first["new_events"]) == (1, 1, 2)
    c1_state, c2_state = contact_state(engine, "C1"), contact_state(engine, "C2")
    assert c1_state["bounced_at"] and not c1_state["opted_out_at"]
    assert c2_state["opted_out_at"] and not c2_state["bounced_at"]
    assert contact_state(engine, "C3") == {"bounced_at": None, "opted_out_at": None}  # a delay changes nothing
    assert events(engine) == [
        {"source": "dsn", "event": "bounce", "address": "c1@a1.example", "message_id": c1,
         "wave_id": wave.wave_id, "kind": "invitation", "recipient": "C1", "status": "5.1.1"},
        {"source": "arf", "event": "complaint", "address": "c2@a1.example", "message_id": c2,
         "wave_id": wave.wave_id, "kind": "invitation", "recipient": "C2", "status": "abuse"},
    ]  # fmt: skip
    assert dovecot.count(mailbox, criterion="UNSEEN") == 1  # the garbage stays, unread, for a person to look at

    dovecot.deliver(mailbox, dsn("c1@a1.example", c1))  # the same DSN delivered twice
    second = bounce_mailbox.poll_bounce_mailbox(engine, "nps_bounces")
    assert (second["read"], second["unparseable"], second["new_events"], second["bounced_contacts"]) == (2, 1, 0, 0)
    assert contact_state(engine, "C1") == c1_state and contact_state(engine, "C2") == c2_state
    assert len(events(engine)) == 2


def test_reports_go_to_the_processed_folder_and_redacted_complaints_find_their_address(
    engine, wave, dovecot, mailbox, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_NPS_BOUNCES", dovecot.connection(mailbox, processed_folder="Processed"))
    c4 = sent_id(wave.wave_id, "C4")
    dovecot.deliver(mailbox, arf(None, c4), dsn("c3@a1.example", "<unknown@elsewhere.example>", "5.7.1"), AUTO_REPLY)

    result = bounce_mailbox.poll_bounce_mailbox(engine, "nps_bounces")

    assert (result["reports"], result["unparseable"], result["complaints"], result["other"]) == (2, 1, 1, 1)
    assert contact_state(engine, "C4")["opted_out_at"]  # the address its Message-ID was sent to
    assert contact_state(engine, "C3") == {"bounced_at": None, "opted_out_at": None}  # 5.7.1: policy, kept
    assert [(e["address"], e["recipient"]) for e in events(engine)] == [
        ("Mixed.Case@A1.example", "C4"),
        ("c3@a1.example", "C3"),  # no Message-ID match: the last email sent to the address
    ]
    assert dovecot.count(mailbox, "Processed") == 2
    assert dovecot.count(mailbox) == dovecot.count(mailbox, criterion="UNSEEN") == 1


def test_a_bounce_read_late_suppresses_the_next_customer_email(engine, wave, dovecot, mailbox, smtp):
    dovecot.deliver(mailbox, dsn("C1@A1.EXAMPLE", sent_id(wave.wave_id, "C1")))
    bounce_mailbox.poll_bounce_mailbox(engine, "nps_bounces")

    outbox.enqueue(engine, wave.wave_id, "reminder", [("C1", "c1@a1.example"), ("C2", "c2@a1.example")])
    with SmtpTransport() as transport:
        reminders = outbox.deliver(engine, wave.wave_id, "reminder", with_message_id, transport)

    assert (reminders.sent, reminders.suppressed) == (1, 1)
    reminded = [
        m["To"]
        for m in smtp.spool.messages()
        if m["Message-ID"] in {sent_id(wave.wave_id, c, "reminder") for c in ("C1", "C2")}
    ]
    assert reminded == ["c2@a1.example"]


# -- ESP webhooks on the survey form's app -------------------------------------------------------


@pytest.fixture
def hooks(monkeypatch):
    """Start the survey form's app (with its webhooks) over a DB; env set before the start counts."""
    servers = []

    def start(engine) -> str:
        server = SurveyServer(engine).__enter__()
        servers.append(server)
        return server.base_url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def sendgrid_batch(wave_id: str) -> list[dict]:
    """SendGrid's Event Webhook body, as documented: one bounce, one blocked, one spam report, one
    delivery (ignored)."""
    return [
        {"email": "c1@a1.example", "timestamp": 1772442000, "smtp-id": sent_id(wave_id, "C1"), "event": "bounce",
         "type": "bounce", "status": "5.0.0", "reason": "550 5.1.1 The email account does not exist",
         "sg_event_id": "ZGVsaXZlcmVkLTAtMTIzNDU2", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648"},
        {"email": "c3@a1.example", "timestamp": 1772442001, "event": "bounce", "type": "blocked",
         "status": "5.7.1", "reason": "blocked by policy", "sg_event_id": "YmxvY2tlZC0x"},
        {"email": "c2@a1.example", "timestamp": 1772442002, "event": "spamreport", "sg_event_id": "c3BhbS0x",
         "sg_message_id": "14c5d75ce93.dfd.64b469.filter0002"},
        {"email": "c4@a1.example", "timestamp": 1772442003, "event": "delivered", "sg_event_id": "ZGVsLTE"},
    ]  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_wave(request, tmp_path, smtp):
    engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    return engine, make_wave(engine, tmp_path, smtp)


def _signing_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(public).decode()


def _signed(key, timestamp: str, body: bytes) -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def _now(offset: int = 0) -> str:
    """SendGrid's timestamp header for a request sent now (plus `offset` seconds)."""
    return str(int(time.time()) + offset)


@pytest.fixture
def sendgrid_key(monkeypatch):
    """SendGrid's signing key; its public half is the webhook's verification key (env)."""
    key, public = _signing_key()
    monkeypatch.setenv("NPS_SENDGRID_WEBHOOK_PUBLIC_KEY", public)
    return key


def test_sendgrid_events_bounce_and_opt_out_once(any_db_wave, hooks, sendgrid_key):
    engine, wave = any_db_wave
    url = hooks(engine) + "/hooks/sendgrid"
    body = json.dumps(sendgrid_batch(wave.wave_id)).encode()

    first = requests.post(url, data=body, headers=_signed(sendgrid_key, _now(), body), timeout=10)
    again = requests.post(url, data=body, headers=_signed(sendgrid_key, _now(), body), timeout=10)

    assert first.status_code == 200 and first.json()["new"] == 3
    assert (first.json()["bounced"], first.json()["opted_out"]) == (1, 1)
    assert again.status_code == 200 and again.json()["new"] == 0
    assert contact_state(engine, "C1")["bounced_at"] and contact_state(engine, "C2")["opted_out_at"]
    assert contact_state(engine, "C3") == {"bounced_at": None, "opted_out_at": None}  # blocked: not the address
    linked = {e["address"]: (e["event"], e["recipient"], e["message_id"]) for e in events(engine)}
    assert linked == {
        "c1@a1.example": ("bounce", "C1", sent_id(wave.wave_id, "C1")),
        "c2@a1.example": ("complaint", "C2", None),  # no smtp-id: the last email to the address
        "c3@a1.example": ("other", "C3", None),
    }


def test_a_signed_sendgrid_webhook_is_applied_and_a_wrongly_signed_one_refused(engine, wave, hooks, sendgrid_key):
    key, (other_key, _) = sendgrid_key, _signing_key()
    url = hooks(engine) + "/hooks/sendgrid"
    body = json.dumps(sendgrid_batch(wave.wave_id)[:1]).encode()

    forged = requests.post(url, data=body, headers=_signed(other_key, _now(), body), timeout=10)
    tampered = requests.post(url, data=body.replace(b"c1@", b"c2@"), headers=_signed(key, _now(), body), timeout=10)
    unsigned = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert [r.status_code for r in (forged, tampered, unsigned)] == [403, 403, 403]
    assert events(engine) == [] and contact_state(engine, "C1")["bounced_at"] is None

    signed = requests.post(url, data=body, headers=_signed(key, _now(), body), timeout=10)
    assert signed.status_code == 200 and signed.json()["bounced"] == 1
    assert contact_state(engine, "C1")["bounced_at"]


def test_a_sendgrid_request_signed_long_ago_or_ahead_is_refused(engine, wave, hooks, sendgrid_key):
    url = hooks(engine) + "/hooks/sendgrid"
    body = json.dumps(sendgrid_batch(wave.wave_id)[:1]).encode()

    replayed = requests.post(url, data=body, headers=_signed(sendgrid_key, _now(-3600), body), timeout=10)
    ahead = requests.post(url, data=body, headers=_signed(sendgrid_key, _now(3600), body), timeout=10)
    assert [r.status_code for r in (replayed, ahead)] == [403, 403]
    assert events(engine) == [] and contact_state(engine, "C1")["bounced_at"] is None

    fresh = requests.post(url, data=body, headers=_signed(sendgrid_key, _now(-60), body), timeout=10)
    assert fresh.status_code == 200 and fresh.json()["bounced"] == 1


@pytest.mark.parametrize(
    ("timestamp", "fresh"),
    [("1000", True), ("400", True), ("1600", True), ("399", False), ("1601", False), ("", False), ("-5", False),
     ("1e3", False), ("１０００", False)],
)  # fmt: skip
def test_a_sendgrid_timestamp_is_fresh_within_ten_minutes_of_now(timestamp, fresh):
    assert esp_webhooks.sendgrid_timestamp_fresh(timestamp, now=1000.0, max_skew_seconds=600) is fresh


def test_webhooks_without_their_secret_are_off(engine, wave, hooks, monkeypatch, caplog):
    monkeypatch.delenv("NPS_SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("NPS_SES_WEBHOOK_TOKEN", raising=False)
    caplog.set_level("WARNING", logger=esp_webhooks.__name__)
    base = hooks(engine)
    key, _ = _signing_key()
    body = json.dumps(sendgrid_batch(wave.wave_id)).encode()

    sendgrid = requests.post(f"{base}/hooks/sendgrid", data=body, headers=_signed(key, _now(), body), timeout=10)
    ses = requests.post(
        f"{base}/hooks/ses", params={"token": "any"}, data=sns(ses_bounce(wave.wave_id, "C1")), timeout=10
    )

    assert [(r.status_code, r.json()) for r in (sendgrid, ses)] == [(404, {"detail": "not configured"})] * 2
    assert events(engine) == []
    assert all(contact_state(engine, c) == {"bounced_at": None, "opted_out_at": None} for c in ("C1", "C2", "C3"))
    assert "NPS_SENDGRID_WEBHOOK_PUBLIC_KEY" in caplog.text and "NPS_SES_WEBHOOK_TOKEN" in caplog.text


def test_webhook_bodies_are_limited_and_must_be_what_the_esp_sends(engine, wave, hooks, monkeypatch, sendgrid_key):
    monkeypatch.setenv("NPS_BOUNCE_HOOK_MAX_BYTES", "1000")
    monkeypatch.setenv("NPS_SES_WEBHOOK_TOKEN", "sns-token")
    base = hooks(engine)
    signed = lambda body: requests.post(  # noqa: E731
        f"{base}/hooks/sendgrid", data=body, headers=_signed(sendgrid_key, _now(), body), timeout=10
    )
    big, not_json = signed(b"[" + b" " * 2000 + b"]"), signed(b"{oops")
    not_sns = requests.post(f"{base}/hooks/ses", params={"token": "sns-token"}, data=b'{"hello": 1}', timeout=10)
    assert [r.status_code for r in (big, not_json, not_sns)] == [413, 400, 400]
    assert events(engine) == []


def sns(message: dict, message_type: str = "Notification", **extra) -> bytes:
    """An SNS HTTP(S) delivery, as SNS posts it (text/plain, the SES notification a JSON string)."""
    envelope = {
        "Type": message_type,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-bounces",
        "Message": json.dumps(message),
        "Timestamp": "2026-03-02T10:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-example.pem",
        **extra,
    }
    return json.dumps(envelope).encode()


def ses_mail(message_id: str, to: str) -> dict:
    return {
        "timestamp": "2026-03-02T09:59:00.000Z",
        "source": SENDER,
        "messageId": "0102018e0f0a1b2c-11111111-2222-3333-4444-555555555555-000000",
        "destination": [to],
        "headersTruncated": False,
        "headers": [{"name": "From", "value": SENDER}, {"name": "To", "value": to},
                    {"name": "Message-ID", "value": message_id}],
        "commonHeaders": {"from": [SENDER], "to": [to], "messageId": message_id},
    }  # fmt: skip


def ses_bounce(wave_id: str, contact_id: str, bounce_type: str = "Permanent") -> dict:
    to = f"{contact_id.lower()}@a1.example"
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": to,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 no such user",
                }
            ],
            "timestamp": "2026-03-02T10:00:00.000Z",
            "feedbackId": f"0102018e-bounce-{contact_id}-{bounce_type}",
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": ses_mail(sent_id(wave_id, contact_id), to),
    }


def ses_complaint(wave_id: str, contact_id: str) -> dict:
    to = f"{contact_id.lower()}@a1.example"
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": to}],
            "timestamp": "2026-03-02T11:00:00.000Z",
            "feedbackId": f"0102018e-complaint-{contact_id}",
            "complaintFeedbackType": "abuse",
            "userAgent": "ExampleFBL/1.0",
        },
        "mail": ses_mail(sent_id(wave_id, contact_id), to),
    }


def test_ses_notifications_through_sns(engine, wave, hooks, monkeypatch, caplog):
    monkeypatch.setenv("NPS_SES_WEBHOOK_TOKEN", "sns-token")
    url = hooks(engine) + "/hooks/ses"
    post = lambda body, token="sns-token": requests.post(  # noqa: E731
        url, params={"token": token}, data=body, headers={"Content-Type": "text/plain; charset=UTF-8"}, timeout=10
    )

    confirm = post(sns({}, "SubscriptionConfirmation", SubscribeURL="https://sns.example/confirm?x=1"))
    wrong_token = post(sns(ses_bounce(wave.wave_id, "C3")), token="guess")
    transient = post(sns(ses_bounce(wave.wave_id, "C3", "Transient")))
    bounce = post(sns(ses_bounce(wave.wave_id, "C1")))
    complaint = post(sns(ses_complaint(wave.wave_id, "C2")))
    again = post(sns(ses_complaint(wave.wave_id, "C2")))

    assert confirm.status_code == 200 and "https://sns.example/confirm?x=1" in caplog.text  # logged, not fetched
    assert wrong_token.status_code == 403
    assert transient.status_code == 200 and transient.json()["new"] == 0
    assert bounce.json()["bounced"] == 1 and complaint.json()["opted_out"] == 1 and again.json()["new"] == 0
    assert contact_state(engine, "C3") == {"bounced_at": None, "opted_out_at": None}
    assert [(e["source"], e["event"], e["recipient"], e["message_id"]) for e in events(engine)] == [
        ("ses", "bounce", "C1", sent_id(wave.wave_id, "C1")),
        ("ses", "complaint", "C2", sent_id(wave.wave_id, "C2")),
    ]


def test_recorded_events_are_kept_once_per_key(engine):
    event = bounce_events.DeliveryEvent("dsn", "bounce", "nobody@nowhere.example", "dsn:k1", status="5.1.1")
    assert bounce_events.record(engine, [event, event]).new == 1
    assert bounce_events.record(engine, [event]).new == 0


# -- the DAG's task ------------------------------------------------------------------------------


def poll_task():
    """The `poll_bounce_mailbox` task's own function, as the DAG file defines it."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(storage.PROJECT_ROOT / "dags" / "nps_bounces.py")).dags["nps_bounces"]
    return dag.get_task("poll_bounce_mailbox").python_callable


def test_the_dag_skips_when_no_bounce_mailbox_is_configured(engine, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    monkeypatch.delenv("AIRFLOW_CONN_NPS_BOUNCES", raising=False)
    with pytest.raises(AirflowSkipException, match="nps_bounces"):
        poll_task()()


def test_the_dag_polls_the_mailbox_of_its_connection(engine, wave, dovecot, mailbox):
    dovecot.deliver(mailbox, dsn("c1@a1.example", sent_id(wave.wave_id, "C1")))
    result = poll_task()()
    assert (result["reports"], result["bounced_contacts"]) == (1, 1)
