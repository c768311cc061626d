"""Real-time responses against real servers: Slack (program, VIP and executive webhooks), Teams and
the CRM on a real local HTTP server, band emails on a real SMTP server, answers through the real
survey form. Each detractor makes exactly one post per channel, one CRM task and one band email,
however often the processing runs and whichever webhook failed on the way."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re

import pytest
import requests
from werkzeug import Response

from devkit.servers import SurveyServer
from include.nps.closed_loop import followups
from include.nps.core import signed_links, storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import ChatTransport, PermanentFailure, TransientFailure, http_failure
from include.nps.realtime import channels, chat_messages, new_responses
from include.nps.wave import audience, responses, routing_rules, waves
from tests.factories import contact, planned_wave, write_csv

SLACK = {"nps_slack": "/slack/program", "nps_slack_vip": "/slack/vip", "nps_slack_executive": "/slack/executive"}
TEAMS = "/teams/webhook"
CRM = "/services/data/v61.0/sobjects/Task"
ACCOUNT_URL = "https://crm.example.com/accounts/{account_id}"
NASTY = "<!channel> *bold* <script>"
WAVE_ID = "test-w1"
BJORK = "Björk &lt;b&gt;Gud&lt;/b&gt;mundsdóttir"  # a name with markup, escaped
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Who is who in chat, where accounts live, and the shipped routing rules."""
    users = tmp_path / "chat_users.yaml"
    users.write_text(
        "users:\n"
        "  csm@vendor.example: {slack: U0CSM, name: Casey Moss}\n"
        "  seller@vendor.example: {slack: U0SELL, name: Sam Seller, teams: 8f0c-sam, crm_user_id: 005SAM}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("NPS_CHAT_USERS", str(users))
    monkeypatch.setenv("NPS_ACCOUNT_URL_TEMPLATE", ACCOUNT_URL)
    monkeypatch.setenv("NPS_CRM_TEMPLATE", "salesforce_task")
    for name in ("NPS_ROUTING_RULES", "NPS_CHAT_RESPONSES", "NPS_BAND_EMAIL_DELAY_MINUTES", "NPS_CRM_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return channels.Settings.from_env()


@pytest.fixture
def hooks(httpserver, monkeypatch, settings):
    """Slack's three webhooks (slackwebhook connections), Teams and the CRM (http connections),
    all on one real local HTTP server; handlers are set by each test."""
    for conn_id, path in SLACK.items():
        conn = {"conn_type": "slackwebhook", "password": httpserver.url_for(path)}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_NPS_TEAMS", json.dumps({"conn_type": "http", "host": httpserver.url_for(TEAMS)}))
    crm_conn = {"conn_type": "http", "host": httpserver.url_for("/"), "extra": {"Authorization": "Bearer test-token"}}
    monkeypatch.setenv("AIRFLOW_CONN_NPS_CRM", json.dumps(crm_conn))
    return httpserver


def answer_all(server, teams_status: int = 200) -> None:
    """Every webhook says ok; the CRM creates tasks 00T0001, 00T0002, ..."""
    for path in SLACK.values():
        server.expect_request(path, method="POST").respond_with_data("ok")
    teams_body = "1" if teams_status < 300 else "Bad payload"
    server.expect_request(TEAMS, method="POST").respond_with_data(teams_body, teams_status)
    ids = itertools.count(1)
    server.expect_request(CRM, method="POST").respond_with_handler(
        lambda _: Response(json.dumps({"id": f"00T{next(ids):04d}", "success": True, "errors": []}), 201)
    )


def posts(server, path: str) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in server.log if request.path == path]


@pytest.fixture
def wave(engine, tmp_path) -> waves.WaveParams:
    """An open wave with invitations sent: C1 (smb, A1), C2 (strategic VIP account, A2), C3 (smb, A3)."""
    rows = [
        contact("C1", "A1"),
        contact("C2", "A2", account_tier="strategic", vip="true", name="Björk <b>Gud</b>mundsdóttir"),
        contact("C3", "A3"),
    ]
    path = write_csv(tmp_path / "contacts.csv", rows)
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    wave = planned_wave(engine, path, start=opened)
    audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, ["C1", "C2", "C3"], 90, wave.open_at)
    waves.set_status(engine, wave.wave_id, "open")
    outbox.enqueue(engine, wave.wave_id, "invitation", [(r["contact_id"], r["email"]) for r in rows])
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": opened})
    return wave


def answer(engine, contact_id: str, score: int, comment: str | None = None) -> None:
    responses.record_response(engine, WAVE_ID, contact_id, {"score": score, "comment": comment, "pillar_answers": {}})


def ledger(engine) -> dict[tuple[str, str], dict]:
    columns = "kind, recipient, status, attempts, last_error, message_id"
    rows = storage.fetch_all(engine, f"SELECT {columns} FROM outbox WHERE kind <> 'invitation'")
    return {(r["kind"], r["recipient"]): r for r in rows}


def due_text(rule_name: str, now: dt.datetime) -> str:
    """When first contact is due by the shipped rule `rule_name` for a detractor routed at `now`."""
    rules = routing_rules.load()
    rule = next(r for r in rules.rules if r.name == rule_name)
    return chat_messages.utc_minute(rule.sla.due(now, "US", rules.hours))


def test_a_detractor_from_the_form_gets_one_post_one_crm_task_and_one_band_email(engine, wave, hooks, smtp):
    answer_all(hooks)
    with SurveyServer(engine) as survey:
        link = f"{survey.base_url}/s/{signed_links.sign('survey', WAVE_ID, 'C1')}"
        csrf = CSRF_FIELD.search(requests.get(link, timeout=10).text).group(1)
        sent = requests.post(link, data={"csrf_token": csrf, "score": "3", "comment": NASTY}, timeout=10)
        assert sent.status_code == 200
    now = dt.datetime.now(dt.UTC)

    new_responses.process_new_responses(engine, now)
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=1))  # a second run: nothing new
    assert smtp.spool.messages() == []  # the band email waits until the answer has been left alone 5 min
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=6))
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=11))

    due = due_text("everyone-else", now)
    form = followups.followup_url(WAVE_ID, "C1", now)  # the owner's link to record the call
    assert posts(hooks, SLACK["nps_slack"]) == [
        {
            "text": "*Detractor 3/10* from Person C1 at <https://crm.example.com/accounts/A1|A1 Inc>\n"
            "> &lt;!channel&gt; *bold* &lt;script&gt;\n"
            "CSM: <@U0CSM>\n"
            f"Follow-up: CS, <@U0CSM>, first contact by {due} · escalation to cs-leads@vendor.example"
            f" · <{form}|Record the call>\n"
            "Wave: W1"
        }
    ]
    assert posts(hooks, TEAMS) == [
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {
                                "type": "TextBlock",
                                "size": "Medium",
                                "weight": "Bolder",
                                "wrap": True,
                                "color": "Attention",
                                "text": "Detractor 3/10 at A1 Inc",
                            },
                            {
                                "type": "FactSet",
                                "facts": [
                                    {"title": "Customer", "value": "Person C1"},
                                    {"title": "Account", "value": "A1 Inc"},
                                    {"title": "Score", "value": "3/10"},
                                    {"title": "Wave", "value": "W1"},
                                ],
                            },
                            {"type": "TextBlock", "wrap": True, "text": "&lt;!channel&gt; \\*bold\\* &lt;script&gt;"},
                            {"type": "TextBlock", "wrap": True, "text": "CSM: <at>Casey Moss</at>"},
                            {
                                "type": "TextBlock",
                                "wrap": True,
                                "text": f"Follow-up: CS, <at>Casey Moss</at>, first contact by {due}, "
                                "escalation to cs-leads@vendor.example",
                            },
                        ],
                        "actions": [
                            {
                                "type": "Action.OpenUrl",
                                "title": "Open the account",
                                "url": "https://crm.example.com/accounts/A1",
                            },
                            {"type": "Action.OpenUrl", "title": "Record the call", "url": form},
                        ],
                        "msteams": {
                            "width": "Full",
                            "entities": [
                                {
                                    "type": "mention",
                                    "text": "<at>Casey Moss</at>",
                                    "mentioned": {"id": "csm@vendor.example", "name": "Casey Moss"},
                                }
                            ],
                        },
                    },
                }
            ],
        }
    ]
    (crm_request,) = [request for request, _ in hooks.log if request.path == CRM]
    assert crm_request.headers["Idempotency-Key"] == "nps:test-w1:C1"
    assert crm_request.headers["Authorization"] == "Bearer test-token"
    assert json.loads(crm_request.get_data()) == {
        "Subject": "NPS detractor 3/10: Person C1 (A1 Inc)",
        "Description": "NPS 3/10 from Person C1 (c1@a1.example) at A1 Inc, wave W1.\n"
        f"Comment: {NASTY}\n"
        "Follow-up owner: csm@vendor.example (cs), rule everyone-else@v1.\n"
        f"First contact due: {due}.\n"
        "Escalation: cs-leads@vendor.example.\n"
        "Account: https://crm.example.com/accounts/A1\n"
        f"Record the call: {form}\n"
        "Reference: nps:test-w1:C1",
        "WhatId": "A1",
        "ActivityDate": due[:10],
        "Priority": "Normal",
        "Status": "Not Started",
        "Type": "Call",
    }
    (email,) = smtp.spool.messages()
    assert (email["To"], email["X-NPS-Kind"]) == ("c1@a1.example", "followup_detractor")
    assert posts(hooks, SLACK["nps_slack_vip"]) == posts(hooks, SLACK["nps_slack_executive"]) == []

    followup = storage.fetch_one(engine, "SELECT * FROM followups WHERE contact_id = 'C1'")
    assert followup["owner_type"] == "cs" and followup["owner"] == "csm@vendor.example"
    assert followup["rule_id"] == "everyone-else@v1" and followup["owner_source"] == "rule"
    assert followup["crm_task_id"] == "00T0001" and followup["escalation_target"] == "cs-leads@vendor.example"
    assert chat_messages.utc_minute(followup["sla_due_at"]) == due
    rows = ledger(engine)
    assert {k: (r["status"], r["attempts"]) for k, r in rows.items()} == {
        ("detractor_alert", "C1"): ("sent", 1),
        ("teams_alert", "C1"): ("sent", 1),
        ("crm_task", "C1"): ("sent", 1),
        ("followup_detractor", "C1"): ("sent", 1),
    }
    assert rows[("crm_task", "C1")]["message_id"] == "00T0001"

    # The wave's close-time alert uses the same ledger keys: it posts this detractor to no channel again.
    nothing = outbox.Outcome().__dict__
    assert new_responses.alert_detractors(engine, WAVE_ID) == {"detractor_alert": nothing, "teams_alert": nothing}
    assert len(posts(hooks, SLACK["nps_slack"])) == len(posts(hooks, TEAMS)) == 1


def test_a_webhook_failing_once_posts_once_and_a_refusal_is_recorded_not_retried(engine, wave, hooks):
    hooks.expect_oneshot_request(SLACK["nps_slack"], method="POST").respond_with_data("busy", 500)
    hooks.expect_oneshot_request(CRM, method="POST").respond_with_data("maintenance", 503)
    for _ in range(outbox.MAX_ATTEMPTS + 1):  # the VIP webhook never works
        hooks.expect_oneshot_request(SLACK["nps_slack_vip"], method="POST").respond_with_data("down", 502)
    answer_all(hooks, teams_status=400)  # Teams refuses the card: a 4xx
    answer(engine, "C1", 4, "Slow support")
    answer(engine, "C2", 8, "Fine")
    now = dt.datetime.now(dt.UTC)

    with pytest.raises(outbox.DeliveryIncomplete, match="detractor_alert"):
        new_responses.process_new_responses(engine, now)
    first = ledger(engine)
    assert (first[("detractor_alert", "C1")]["status"], first[("crm_task", "C1")]["status"]) == ("pending", "pending")
    assert first[("teams_alert", "C1")]["status"] == "failed" and "400" in first[("teams_alert", "C1")]["last_error"]

    with pytest.raises(outbox.DeliveryIncomplete, match="vip_escalation"):  # only the VIP webhook still fails
        new_responses.process_new_responses(engine, now + dt.timedelta(minutes=1))
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=2))  # its third attempt: given up
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=3))

    assert len(posts(hooks, SLACK["nps_slack"])) == 3  # C1's detractor alert twice (500, then ok), C2's once
    assert [p["text"].splitlines()[0] for p in posts(hooks, SLACK["nps_slack"])] == [
        "*Detractor 4/10* from Person C1 at <https://crm.example.com/accounts/A1|A1 Inc>",
        f"*Passive 8/10* from {BJORK} at <https://crm.example.com/accounts/A2|A2 Inc> (VIP)",
        "*Detractor 4/10* from Person C1 at <https://crm.example.com/accounts/A1|A1 Inc>",
    ]
    assert len(posts(hooks, TEAMS)) == 2  # once each, never retried
    assert len(posts(hooks, CRM)) == 2 and len(posts(hooks, SLACK["nps_slack_vip"])) == outbox.MAX_ATTEMPTS
    rows = ledger(engine)
    assert {k: (r["status"], r["attempts"]) for k, r in rows.items()} == {
        ("detractor_alert", "C1"): ("sent", 2),
        ("response_alert", "C2"): ("sent", 1),
        ("teams_alert", "C1"): ("failed", 1),
        ("teams_alert", "C2"): ("failed", 1),
        ("vip_escalation", "C2"): ("failed", 3),
        ("crm_task", "C1"): ("sent", 2),
    }
    assert rows[("vip_escalation", "C2")]["last_error"] == "Slack webhook nps_slack_vip answered 502"
    assert storage.fetch_one(engine, "SELECT crm_task_id FROM followups WHERE contact_id = 'C1'") == {
        "crm_task_id": "00T0001"
    }


def test_a_vip_score_of_0_escalates_and_reaches_the_executive(engine, wave, hooks, smtp):
    answer_all(hooks)
    answer(engine, "C2", 0, "We are leaving.")
    answer(engine, "C3", 10)
    now = dt.datetime.now(dt.UTC)
    new_responses.process_new_responses(engine, now)
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=6))

    due = due_text("critical-sales-led", now)
    tail = (
        "\n> We are leaving.\nCSM: <@U0CSM>\n"
        f"Follow-up: sales, <@U0SELL>, first contact by {due} · escalation to cs-leads@vendor.example"
        f" · <{followups.followup_url(WAVE_ID, 'C2', now)}|Record the call>\nWave: W1"
    )
    post = f"*Detractor 0/10* from {BJORK} at <https://crm.example.com/accounts/A2|A2 Inc>"
    assert posts(hooks, SLACK["nps_slack_vip"]) == [{"text": f":rotating_light: *VIP escalation* · {post}{tail}"}]
    assert posts(hooks, SLACK["nps_slack_executive"]) == [
        {"text": f":red_circle: *Score 0/10, for the executive* · {post} (VIP){tail}"}
    ]
    assert [p["text"] for p in posts(hooks, SLACK["nps_slack"])] == [
        f"{post} (VIP){tail}",
        "*Promoter 10/10* from Person C3 at <https://crm.example.com/accounts/A3|A3 Inc>\n"
        "> _(no comment)_\nCSM: <@U0CSM>\nWave: W1",
    ]
    teams = {card["attachments"][0]["content"]["body"][0]["text"] for card in posts(hooks, TEAMS)}
    assert teams == {"Detractor 0/10 at A2 Inc (VIP)", "Promoter 10/10 at A3 Inc"}
    mentioned = posts(hooks, TEAMS)[0]["attachments"][0]["content"]["msteams"]["entities"]
    assert [m["mentioned"] for m in mentioned] == [
        {"id": "csm@vendor.example", "name": "Casey Moss"},
        {"id": "8f0c-sam", "name": "Sam Seller"},
    ]
    (task,) = posts(hooks, CRM)  # the promoter gets no CRM task
    assert (task["OwnerId"], task["Priority"], task["ActivityDate"]) == ("005SAM", "High", due[:10])
    emails = {m["To"]: m for m in smtp.spool.messages()}
    critical = emails["c2@a2.example"]
    assert critical["X-NPS-Kind"] == "followup_critical" and "ceo@vendor.example" in critical["From"]
    assert emails["c3@a3.example"]["X-NPS-Kind"] == "followup_promoter" and len(emails) == 2


def test_a_response_breaking_the_check_is_set_aside_and_never_alerted(engine, wave, hooks):
    answer_all(hooks)
    answer(engine, "C1", 2, "Broken")
    before_open = wave.open_at - dt.timedelta(hours=2)
    storage.execute(
        engine,
        "INSERT INTO responses (wave_id, contact_id, score, comment, pillar_answers, answered_at, updated_at) "
        "VALUES (:w, 'C3', 1, 'typed in before the wave opened', '{}', :t, :t)",
        {"w": WAVE_ID, "t": before_open},
    )
    new_responses.process_new_responses(engine, dt.datetime.now(dt.UTC))

    assert [p["text"].split(" from ")[1].split(" at ")[0] for p in posts(hooks, SLACK["nps_slack"])] == ["Person C1"]
    assert posts(hooks, SLACK["nps_slack_executive"]) == []  # C3's 1/10 was set aside
    reason = storage.fetch_one(engine, "SELECT quarantine_reason FROM responses WHERE contact_id = 'C3'")
    assert reason["quarantine_reason"].startswith("real-time check: answered while the wave was open")
    check = storage.fetch_one(engine, "SELECT success, summary FROM check_results WHERE step = 'realtime_responses'")
    assert check["success"] and "1 row(s) set aside" in check["summary"]


def test_the_close_routes_no_detractor_twice_and_keeps_the_real_time_routing(engine, wave, hooks, chat):
    """Slack, Teams and the chat webhook all configured: the detractor reaches each once, in real time."""
    from include.nps import pipeline

    answer_all(hooks)
    answer(engine, "C1", 5, "Meh")
    now = dt.datetime.now(dt.UTC)
    new_responses.process_new_responses(engine, now)
    routed = storage.fetch_one(engine, "SELECT rule_id, sla_due_at FROM followups WHERE contact_id = 'C1'")
    waves.set_status(engine, WAVE_ID, "closed")

    result = pipeline.route_detractors(WAVE_ID)
    pipeline.route_detractors(WAVE_ID)

    nothing = outbox.Outcome().__dict__
    assert result["detractors"] == 1
    assert result["alerts"] == {"detractor_alert": nothing, "teams_alert": nothing, "chat_alert": nothing}
    assert storage.fetch_one(engine, "SELECT rule_id, sla_due_at FROM followups WHERE contact_id = 'C1'") == routed
    assert len(posts(hooks, SLACK["nps_slack"])) == len(posts(hooks, TEAMS)) == len(posts(chat, "/hooks/nps")) == 1
    assert posts(chat, "/hooks/nps") == posts(hooks, SLACK["nps_slack"])  # the same words on both


def test_the_close_time_alert_reaches_a_chat_webhook_added_after_the_real_time_post(engine, wave, hooks, chat, smtp):
    """The real-time post went to Slack while only Slack was configured; the chat webhook gets the
    same alert at close (each channel its own ledger row): CSM mention, due time, escalation, the
    follow-up link and every line of the comment, escaped. A re-run posts nothing twice."""
    from include.nps import pipeline

    answer_all(hooks)
    answer(engine, "C1", 3, "Line one\n<!channel> line *two*\n\nline four")
    routed_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AIRFLOW_CONN_NPS_CHAT")
        new_responses.process_new_responses(engine, routed_at)  # alert and band email, Slack and Teams only
    assert posts(chat, "/hooks/nps") == [] and len(posts(hooks, SLACK["nps_slack"])) == 1
    waves.set_status(engine, WAVE_ID, "closed")

    pipeline.route_detractors(WAVE_ID)
    pipeline.route_detractors(WAVE_ID)

    due = due_text("everyone-else", routed_at)
    form = followups.followup_url(WAVE_ID, "C1", routed_at)
    assert posts(chat, "/hooks/nps") == [
        {
            "text": "*Detractor 3/10* from Person C1 at <https://crm.example.com/accounts/A1|A1 Inc>\n"
            "> Line one\n> &lt;!channel&gt; line *two*\n> \n> line four\n"
            "CSM: <@U0CSM>\n"
            f"Follow-up: CS, <@U0CSM>, first contact by {due} · escalation to cs-leads@vendor.example"
            f" · <{form}|Record the call>\n"
            "Wave: W1"
        }
    ]
    assert posts(hooks, SLACK["nps_slack"]) == posts(chat, "/hooks/nps") and len(posts(hooks, TEAMS)) == 1
    assert {k: r["status"] for k, r in ledger(engine).items() if k[0].endswith("_alert")} == {
        ("detractor_alert", "C1"): "sent",
        ("teams_alert", "C1"): "sent",
        ("chat_alert", "C1"): "sent",
    }


def test_the_close_time_alert_of_an_account_with_blank_optional_fields_and_no_comment(engine, wave, settings, chat):
    """No tier, CSM or salesperson on record, no comment: the alert says so in words, never 'nan'."""
    from include.nps import pipeline

    storage.execute(engine, "UPDATE accounts SET tier = NULL, csm = NULL, sales_owner = NULL WHERE account_id = 'A3'")
    answer(engine, "C3", 4)
    waves.set_status(engine, WAVE_ID, "closed")

    pipeline.route_detractors(WAVE_ID)
    pipeline.route_detractors(WAVE_ID)

    (post,) = posts(chat, "/hooks/nps")
    text = post["text"].split(", first contact by ")[0]
    assert text == (
        "*Detractor 4/10* from Person C3 at <https://crm.example.com/accounts/A3|A3 Inc>\n"
        "> _(no comment)_\n"
        "CSM: none on record\n"
        "Follow-up: CS, csops@vendor.example"
    )
    assert "|Record the call>" in post["text"]


def test_the_close_time_band_emails_accept_those_sent_in_real_time(engine, wave, hooks, smtp):
    from include.nps import pipeline

    answer_all(hooks)
    answer(engine, "C1", 9)
    new_responses.process_new_responses(engine, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6))
    waves.set_status(engine, WAVE_ID, "closed")
    pipeline.send_followups(WAVE_ID)
    assert len(smtp.spool.messages()) == 1


def test_an_answer_changed_after_its_real_time_email_gets_no_second_one_and_the_close_passes(engine, wave, hooks, smtp):
    """C1 answers 3 (alert, follow-up, detractor email), then changes to 9 before the close: the
    close routes and emails nobody twice and its checks accept the real-time follow-up and email."""
    from include.nps import pipeline

    answer_all(hooks)
    answer(engine, "C1", 3, "Slow")
    now = dt.datetime.now(dt.UTC)
    new_responses.process_new_responses(engine, now + dt.timedelta(minutes=6))
    answer(engine, "C1", 9, "Fixed now, thanks")
    waves.set_status(engine, WAVE_ID, "closed")
    pipeline.route_detractors(WAVE_ID)
    pipeline.send_followups(WAVE_ID)

    assert [m["X-NPS-Kind"] for m in smtp.spool.messages()] == ["followup_detractor"]
    routing_check = storage.fetch_one(engine, "SELECT success FROM check_results WHERE step = 'routing'")
    assert routing_check["success"]
    assert storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM followups")["n"] == 1  # the loop stays open


def test_a_detractor_answering_just_before_the_close_gets_the_real_time_channels_at_close(engine, wave, hooks, smtp):
    from include.nps import pipeline

    answer_all(hooks)
    answer(engine, "C2", 1, "Too late for the last run")  # VIP, critical: nps_responses never saw it
    waves.set_status(engine, WAVE_ID, "closed")
    pipeline.route_detractors(WAVE_ID)
    pipeline.route_detractors(WAVE_ID)  # a re-run posts nothing twice
    for path in (*SLACK.values(), TEAMS, CRM):
        assert len(posts(hooks, path)) == 1, path
    assert storage.fetch_one(engine, "SELECT crm_task_id FROM followups WHERE contact_id = 'C2'")["crm_task_id"]


def test_the_dag_checks_alerts_and_emails_an_open_wave(airflow_db, engine, wave, hooks, smtp, monkeypatch):
    from devkit.localrun import load_dag

    monkeypatch.setenv("NPS_BAND_EMAIL_DELAY_MINUTES", "0")
    answer_all(hooks)
    answer(engine, "C1", 6, "Could be better")

    run = load_dag("nps_responses").test()

    assert str(run.state) == "success"
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert states == {
        ("check_new_responses", -1): "success",
        ("alert_new_responses", 0): "success",
        ("send_band_emails", 0): "success",
    }
    assert len(posts(hooks, SLACK["nps_slack"])) == len(posts(hooks, CRM)) == len(smtp.spool.messages()) == 1


ESCAPES = [
    (NASTY, "&lt;!channel&gt; *bold* &lt;script&gt;", "&lt;!channel&gt; \\*bold\\* &lt;script&gt;"),
    ("<@U123> <https://evil.example|click>", "&lt;@U123&gt; &lt;https://evil.example|click&gt;", None),
    ("<at>CEO</at> [a](https://x.example) A&B", None, "&lt;at&gt;CEO&lt;/at&gt; \\[a\\](https://x.example) A&amp;B"),
    ("# T\n- i\n2. step\nsnake_case `c` ~x~", None, "\\# T\n\\- i\n2\\. step\nsnake\\_case \\`c\\` \\~x\\~"),
]


@pytest.mark.parametrize(("text", "slack", "teams"), ESCAPES)
def test_customer_text_can_neither_mention_nor_format_nor_link(text, slack, teams):
    if slack is not None:
        assert chat_messages.slack_text(text) == slack
    if teams is not None:
        assert chat_messages.teams_text(text) == teams


@pytest.mark.parametrize(
    ("status", "failure"),
    [(500, TransientFailure), (503, TransientFailure), (429, TransientFailure), (408, TransientFailure),
     (425, TransientFailure), (400, PermanentFailure), (403, PermanentFailure), (404, PermanentFailure),
     (410, PermanentFailure)],
)  # fmt: skip
def test_5xx_408_425_and_429_are_retried_other_4xx_are_final(status, failure):
    assert type(http_failure("webhook", status, "")) is failure


@pytest.mark.parametrize(
    ("status", "failure"), [(408, TransientFailure), (425, TransientFailure), (403, PermanentFailure)]
)
def test_the_chat_webhook_retries_what_every_http_channel_retries(httpserver, monkeypatch, status, failure):
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=status)
    monkeypatch.setenv("AIRFLOW_CONN_NPS_CHAT", json.dumps({"conn_type": "http", "host": httpserver.url_for("/hook")}))
    with pytest.raises(failure), ChatTransport() as transport:
        transport.send({"text": "hello"})
