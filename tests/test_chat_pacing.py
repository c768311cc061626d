"""Sending at the pace a service allows, against real local servers: Slack's one post per second,
a 429's Retry-After honoured for the post it refused and for the ones after it, and an SMTP
connection's `rate_per_second`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pytest
from werkzeug import Request, Response

from include.nps.core import storage
from include.nps.core.rate_limits import Pacer
from include.nps.delivery import outbox
from include.nps.delivery.transports import SlackWebhookTransport, SmtpTransport, retry_after_seconds
from tests.factories import plain_email

WAVE = "test-pacing"


@pytest.fixture
def slack(httpserver, monkeypatch):
    """A Slack incoming webhook that answers the first post 429 with Retry-After: 2, then 200;
    `posts` holds (monotonic time, text) of every post it took."""
    posts: list[tuple[float, str]] = []
    refused = []

    def handler(request: Request) -> Response:
        text = json.loads(request.data)["text"]
        if not refused:
            refused.append(text)
            return Response("rate_limited", status=429, headers={"Retry-After": "2"})
        posts.append((time.monotonic(), text))
        return Response("ok")

    httpserver.expect_request("/slack", method="POST").respond_with_handler(handler)
    conn = {"conn_type": "slackwebhook", "password": httpserver.url_for("/slack")}
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SLACK_TEST", json.dumps(conn))
    return posts


def _post(row: dict) -> dict:
    return {"text": row["recipient"]}


def test_slack_posts_one_per_second_and_a_429_waits_its_retry_after(engine, slack):
    outbox.enqueue(engine, WAVE, "chat_alert", [(f"R{n}", "#nps") for n in range(4)], channel="slack")
    started, started_at = time.monotonic(), storage.utcnow()
    with SlackWebhookTransport("nps_slack_test") as transport:
        with pytest.raises(outbox.DeliveryIncomplete, match="1 chat_alert"):
            outbox.deliver(engine, WAVE, "chat_alert", _post, transport)
        refused = storage.fetch_one(engine, "SELECT attempts, next_attempt_at FROM outbox WHERE recipient = 'R0'")
        retry_at = storage.as_utc(refused["next_attempt_at"])
        assert refused["attempts"] == 1 and retry_at >= started_at + dt.timedelta(seconds=2)
        time.sleep(max((retry_at - storage.utcnow()).total_seconds(), 0))
        outcome = outbox.deliver(engine, WAVE, "chat_alert", _post, transport)
    assert outcome.sent == 1 and [text for _, text in slack] == ["R1", "R2", "R3", "R0"]
    times = [at for at, _ in slack]
    assert times[0] - started >= 2  # the first post after the 429 waited its Retry-After
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(times))


def test_an_smtp_connections_rate_paces_its_messages(engine, smtp, monkeypatch):
    conn = json.loads(smtp.connection_uri())
    conn["extra"]["rate_per_second"] = 20
    monkeypatch.setenv("AIRFLOW_CONN_NPS_SMTP", json.dumps(conn))
    outbox.enqueue(engine, WAVE, "report", [(f"r{n}@vendor.example",) * 2 for n in range(11)])
    started = time.monotonic()
    with SmtpTransport() as transport:
        outcome = outbox.deliver(engine, WAVE, "report", plain_email, transport)
    assert outcome.sent == 11 and time.monotonic() - started >= 10 / 20  # 11 messages: 10 gaps of 1/20 s
    assert transport.pacer is not None and transport.pacer.waited > 0


def test_a_pacer_spaces_events_and_holds_them_for_a_pause():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    pacer.pause(2)
    pacer.wait()
    assert slept == [0.25, 0.25, 2.0]  # 4 a second; then the pause from t=0.5 until t=2.5
    assert Pacer(None, clock=lambda: now[0], sleep=sleep).wait() is None and len(slept) == 3


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 3 ", 3.0), ("", 0.0), (None, 0.0), ("soon", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_a_retry_after_date_in_the_future_is_the_seconds_until_then():
    from email.utils import format_datetime

    later = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90), usegmt=True)
    assert 85 <= retry_after_seconds(later) <= 90
