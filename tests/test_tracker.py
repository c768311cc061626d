"""Action items as tracker issues, against a real local HTTP server: the exact Jira and GitHub
request bodies (a hostile comment escaped), one issue per item across runs, after a 500 and after a
crash, a refused issue recorded and never retried, and the retrospective step linking its issues."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from include.nps import pipeline
from include.nps.closed_loop import issue_tracker
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import retrospective
from tests.factories import contact, planned_wave, write_csv
from tests.test_retrospective import seed_wave

HOSTILE = "@channel [link](http://x) {code} <script> ``` Too expensive"
FRIDAY = dt.datetime(2026, 3, 6, 9, tzinfo=dt.UTC)  # high: due Fri 13, medium: Fri 20
ITEMS = [
    {
        "item_key": "theme-pricing",
        "title": "Act on what detractors say about Pricing and value",
        "reason": "raised by 3 of 7 detractor(s) (43% of them); 3 con(s), 0 suggestion(s), 0 pro(s)",
        "risk": "high",
        "priority": "high",
        "owner": "pricing@vendor.example",
        "theme": "pricing",
    },
    {
        "item_key": "silent-A7",
        "title": "Reach out to silent account A7 Inc",
        "reason": "none of 3 invited contact(s) answered",
        "risk": "medium",
        "priority": "medium",
        "owner": "csm@vendor.example",
        "theme": None,
    },
]
PARTS = [
    {
        "contact_id": "C1",
        "account_name": "Acme *Corp*",
        "score": 2,
        "locale": "en",
        "comment": HOSTILE,
        "kind": "con",
        "theme": "pricing",
        "matched": [],
    },
]


@pytest.fixture
def wave(engine, tmp_path):
    return planned_wave(engine, write_csv(tmp_path / "c.csv", [contact("C1")]))


def store(engine, wave, items=ITEMS) -> list[dict]:
    retrospective.store_action_items(engine, wave.wave_id, items, FRIDAY, "US")
    return retrospective.action_items_frame(engine, wave.wave_id, items).to_dict("records")


def connect(monkeypatch, httpserver, extra: dict, login: str | None = None) -> issue_tracker.Tracker:
    conn = {"conn_type": "http", "host": httpserver.url_for("/").rstrip("/"), "password": "api-token", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_NPS_TRACKER", json.dumps({**conn, "login": login} if login else conn))
    return issue_tracker.settings()


def open_issues(engine, target, wave, parts=PARTS) -> outbox.Outcome:
    return issue_tracker.open_issues(
        engine, target, {"wave_id": wave.wave_id, "name": wave.wave_name}, store(engine, wave), parts
    )


def numbered(field: str, pattern: str):
    """A tracker that numbers the issues it creates: 1, 2, 3..."""
    from werkzeug import Response

    numbers = iter(range(1, 1000))
    return lambda request: Response(json.dumps({field: pattern.format(next(numbers))}), status=201)


def linked(engine, wave) -> dict[str, str | None]:
    rows = storage.fetch_all(
        engine, "SELECT item_key, tracker_issue FROM action_items WHERE wave_id = :w", w=wave.wave_id
    )
    return {row["item_key"]: row["tracker_issue"] for row in rows}


JIRA_PRICING = {
    "fields": {
        "project": {"key": "CSI"},
        "issuetype": {"name": "Task"},
        "summary": "[NPS W1] Act on what detractors say about Pricing and value",
        "description": "raised by 3 of 7 detractor(s) (43% of them); 3 con(s), 0 suggestion(s), 0 pro(s)\n"
        "\n"
        "*Risk:* high · *Owner:* pricing@vendor.example · *Due:* 2026-03-13\n"
        "\n"
        "*Checkpoints*\n"
        "* 2026-03-09: plan agreed\n"
        "* 2026-03-11: halfway review\n"
        "* 2026-03-13: done\n"
        "\n"
        "*What customers wrote*\n"
        "bq. @channel \\[link\\](http://x) \\{code\\} <script> ``` Too expensive (2/10, Acme \\*Corp\\*)\n"
        "\n"
        "Opened by the retrospective of NPS wave W1. Reference: nps:test\\-w1:theme\\-pricing",
        "priority": {"name": "High"},
        "duedate": "2026-03-13",
        "labels": ["nps", "nps-retrospective", "risk-high", "theme-pricing"],
    }
}
JIRA_SILENT = {
    "fields": {
        "project": {"key": "CSI"},
        "issuetype": {"name": "Task"},
        "summary": "[NPS W1] Reach out to silent account A7 Inc",
        "description": "none of 3 invited contact(s) answered\n"
        "\n"
        "*Risk:* medium · *Owner:* csm@vendor.example · *Due:* 2026-03-20\n"
        "\n"
        "*Checkpoints*\n"
        "* 2026-03-09: plan agreed\n"
        "* 2026-03-13: halfway review\n"
        "* 2026-03-20: done\n"
        "\n"
        "Opened by the retrospective of NPS wave W1. Reference: nps:test\\-w1:silent\\-A7",
        "priority": {"name": "Medium"},
        "duedate": "2026-03-20",
        "labels": ["nps", "nps-retrospective", "risk-medium"],
    }
}


def test_jira_issues_carry_every_field_and_escape_customer_text(engine, wave, httpserver, monkeypatch):
    target = connect(
        monkeypatch, httpserver, {"flavour": "jira", "project": "CSI", "labels": ["nps"]}, "me@acme.example"
    )
    path = "/rest/api/2/issue"
    httpserver.expect_request(path, method="POST", json=JIRA_PRICING).respond_with_json({"key": "CSI-1"}, status=201)
    httpserver.expect_request(path, method="POST", json=JIRA_SILENT).respond_with_json({"key": "CSI-2"}, status=201)

    assert open_issues(engine, target, wave) == outbox.Outcome(sent=2)
    httpserver.check_assertions()
    request = httpserver.log[0][0]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"me@acme.example:api-token").decode()
    base = httpserver.url_for("/").rstrip("/")
    assert linked(engine, wave) == {"theme-pricing": f"{base}/browse/CSI-1", "silent-A7": f"{base}/browse/CSI-2"}


def test_github_issues_carry_every_field_and_fence_customer_text(engine, wave, httpserver, monkeypatch):
    extra = {"flavour": "github", "repo": "acme/cs-improvements", "assignees": {"pricing@vendor.example": "pat"}}
    target = connect(monkeypatch, httpserver, extra)
    expected = {
        "title": "[NPS W1] Act on what detractors say about Pricing and value",
        "body": "raised by 3 of 7 detractor\\(s\\) \\(43% of them\\); 3 con\\(s\\), 0 suggestion\\(s\\), 0 pro\\(s\\)\n"
        "\n"
        "**Risk:** high · **Owner:** pricing\\@vendor\\.example · **Due:** 2026-03-13\n"
        "\n"
        "**Checkpoints**\n"
        "- [ ] 2026-03-09: plan agreed\n"
        "- [ ] 2026-03-11: halfway review\n"
        "- [ ] 2026-03-13: done\n"
        "\n"
        "**What customers wrote**\n"
        "\n"
        "2/10, Acme \\*Corp\\*:\n"
        "````text\n"
        "@channel [link](http://x) {code} <script> ``` Too expensive\n"
        "````\n"
        "\n"
        "Opened by the retrospective of NPS wave W1. Reference: nps:test\\-w1:theme\\-pricing",
        "labels": ["nps-retrospective", "risk-high", "theme-pricing"],
        "assignees": ["pat"],
    }
    path = "/repos/acme/cs-improvements/issues"
    answer = {"number": 7, "html_url": "https://github.com/acme/cs-improvements/issues/7"}
    httpserver.expect_request(path, method="POST", json=expected).respond_with_json(answer, status=201)
    other = {"number": 8, "html_url": "https://github.com/acme/cs-improvements/issues/8"}
    httpserver.expect_request(path, method="POST").respond_with_json(other, status=201)

    assert open_issues(engine, target, wave) == outbox.Outcome(sent=2)
    requests = {json.loads(r.data)["title"]: r for r, _ in httpserver.log}
    pricing = requests[expected["title"]]
    assert json.loads(pricing.data) == expected  # the first handler answered it: issue 7
    assert pricing.headers["Authorization"] == "Bearer api-token"
    assert pricing.headers["X-GitHub-Api-Version"] == "2022-11-28"
    silent = json.loads(requests["[NPS W1] Reach out to silent account A7 Inc"].data)
    assert silent["assignees"] == [] and silent["labels"] == ["nps-retrospective", "risk-medium"]
    assert "What customers wrote" not in silent["body"]
    assert linked(engine, wave)["theme-pricing"] == answer["html_url"]


def test_each_item_gets_one_issue_however_often_the_step_runs(engine, wave, httpserver, monkeypatch):
    target = connect(monkeypatch, httpserver, {"flavour": "jira", "project": "CSI"}, "me@acme.example")
    httpserver.expect_request("/rest/api/2/issue", method="POST").respond_with_handler(numbered("key", "CSI-{}"))
    assert open_issues(engine, target, wave).sent == 2
    assert open_issues(engine, target, wave) == outbox.Outcome()
    assert len(httpserver.log) == 2 and set(linked(engine, wave).values()) == {
        f"{target.base_url}/browse/CSI-1",
        f"{target.base_url}/browse/CSI-2",
    }


def test_a_server_error_is_retried_by_the_next_attempt_and_makes_one_issue(engine, wave, httpserver, monkeypatch):
    target = connect(monkeypatch, httpserver, {"flavour": "jira", "project": "CSI"}, "me@acme.example")
    path = "/rest/api/2/issue"
    httpserver.expect_oneshot_request(path, method="POST").respond_with_data("busy", status=500)
    httpserver.expect_oneshot_request(path, method="POST").respond_with_data("slow down", status=429)
    httpserver.expect_request(path, method="POST").respond_with_json({"key": "CSI-9"}, status=201)
    one = [ITEMS[0]]
    with pytest.raises(outbox.DeliveryIncomplete):  # the task fails; Airflow retries it
        issue_tracker.open_issues(
            engine, target, {"wave_id": wave.wave_id, "name": "W1"}, store(engine, wave, one), PARTS
        )
    with pytest.raises(outbox.DeliveryIncomplete):
        issue_tracker.open_issues(
            engine, target, {"wave_id": wave.wave_id, "name": "W1"}, store(engine, wave, one), PARTS
        )
    outcome = issue_tracker.open_issues(
        engine, target, {"wave_id": wave.wave_id, "name": "W1"}, store(engine, wave, one), PARTS
    )
    assert outcome == outbox.Outcome(sent=1) and len(httpserver.log) == 3
    row = storage.fetch_one(engine, "SELECT status, attempts, message_id FROM outbox WHERE kind = 'tracker_issue'")
    assert row == {"status": "sent", "attempts": 3, "message_id": f"{target.base_url}/browse/CSI-9"}


def test_a_refused_issue_is_recorded_and_never_retried(engine, wave, httpserver, monkeypatch):
    target = connect(monkeypatch, httpserver, {"flavour": "github", "repo": "acme/cs"})
    refusal = '{"message":"Validation Failed"}'
    httpserver.expect_request("/repos/acme/cs/issues", method="POST").respond_with_data(refusal, status=422)
    assert open_issues(engine, target, wave) == outbox.Outcome(failed=2)
    assert open_issues(engine, target, wave) == outbox.Outcome()
    assert len(httpserver.log) == 2
    stored = retrospective.action_items_frame(engine, wave.wave_id).to_dict("records")
    assert {(i["tracker_issue"], i["tracker_status"]) for i in stored} == {(None, "failed")}
    assert stored[0]["tracker_error"] == f"tracker github:acme/cs refused the issue: 422 {refusal}"


def test_a_send_cut_short_by_a_crash_is_never_repeated(engine, wave, httpserver, monkeypatch):
    """The ledger row was claimed and the worker died before the answer was recorded: the issue
    may exist, so it is held in doubt for a person to check, not created a second time."""
    target = connect(monkeypatch, httpserver, {"flavour": "jira", "project": "CSI"}, "me@acme.example")
    httpserver.expect_request("/rest/api/2/issue", method="POST").respond_with_json({"key": "CSI-1"}, status=201)
    outbox.enqueue(engine, wave.wave_id, issue_tracker.KIND, [("theme-pricing", target.address)], issue_tracker.CHANNEL)
    storage.execute(engine, "UPDATE outbox SET status = 'sending', attempts = 1 WHERE kind = 'tracker_issue'")

    assert open_issues(engine, target, wave) == outbox.Outcome(sent=1, in_doubt=1)  # only silent-A7 sent
    assert json.loads(httpserver.log[0][0].data)["fields"]["summary"].endswith("silent account A7 Inc")
    ledger = storage.fetch_one(engine, "SELECT status, last_error FROM outbox WHERE recipient = 'theme-pricing'")
    assert ledger["status"] == "in_doubt" and "outcome unknown" in ledger["last_error"]


def test_an_item_that_names_an_issue_or_is_closed_gets_none(engine, wave, httpserver, monkeypatch):
    target = connect(monkeypatch, httpserver, {"flavour": "jira", "project": "CSI"}, "me@acme.example")
    store(engine, wave)
    storage.execute(
        engine,
        "UPDATE action_items SET tracker_issue = 'https://jira.example/browse/OLD-1' WHERE item_key = 'theme-pricing'",
    )
    storage.execute(engine, "UPDATE action_items SET status = 'done' WHERE item_key = 'silent-A7'")
    assert open_issues(engine, target, wave) == outbox.Outcome()
    assert httpserver.log == [] and linked(engine, wave)["theme-pricing"] == "https://jira.example/browse/OLD-1"


def test_the_connection_is_checked_and_optional(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NPS_TRACKER", raising=False)
    assert issue_tracker.settings() is None
    with pytest.raises(issue_tracker.TrackerSettingsError) as failure:
        issue_tracker.from_connection(
            None, None, None, None, None, {"flavour": "gitlab", "label": ["a b"], "labels": ["a b"]}
        )
    assert str(failure.value) == (
        "connection 'nps_tracker' has 4 problem(s):\n"
        "  extra.label: unknown field; known: flavour, project, repo, issue_type, labels, assignees, headers\n"
        "  host: give the tracker API's base URL, like https://acme.atlassian.net\n"
        "  extra.flavour: must be 'jira' or 'github', got 'gitlab'\n"
        "  extra.labels: a list of labels without spaces, got ['a b']"
    )
    with pytest.raises(issue_tracker.TrackerSettingsError, match=r"extra\.repo: the GitHub repository as owner/name"):
        issue_tracker.from_connection(
            "https://api.github.com", None, None, None, "t", {"flavour": "github", "repo": "acme"}
        )
    jira = issue_tracker.from_connection(
        "acme.atlassian.net", None, None, "a@b", "s3cret", {"flavour": "jira", "project": "CSI"}
    )
    assert (jira.base_url, jira.path, jira.address) == ("https://acme.atlassian.net", "/rest/api/2/issue", "jira:CSI")
    assert "s3cret" not in repr(jira)  # a logged setting never shows the token


def test_the_retrospective_step_opens_the_issues_and_links_them_in_its_report(
    engine, tmp_path, smtp, nps_home, httpserver, monkeypatch
):
    connect(monkeypatch, httpserver, {"flavour": "github", "repo": "acme/cs"})
    created = numbered("html_url", "https://github.com/acme/cs/issues/{}")
    httpserver.expect_request("/repos/acme/cs/issues", method="POST").respond_with_handler(created)
    wave = seed_wave(engine, tmp_path)
    first = pipeline.run_retrospective(wave.wave_id)
    assert first["tracker_issues"] == first["action_items"] == len(httpserver.log) == 6
    titles = [json.loads(request.data)["title"] for request, _ in httpserver.log]
    assert "[NPS W1] Act on what detractors say about Pricing and value" in titles
    bodies = {json.loads(request.data)["title"]: json.loads(request.data)["body"] for request, _ in httpserver.log}
    others = bodies["[NPS W1] Review the other cons and pick fixes"]  # the cons no theme item covers
    assert "```text\nWe are unhappy.\n```" in others and "```text\nOutage last week.\n```" in others
    assert "Too expensive" not in others  # pricing has its own issue
    ideas = bodies["[NPS W1] Consider what customers suggest about Reporting and analytics"]
    assert "```text\nReporting should export to Excel.\n```" in ideas and "Please add dashboards." in ideas
    assert "Keep it up" not in ideas and "Keep it up" in bodies["[NPS W1] Review the other suggestions"]
    report = (nps_home / "reports" / wave.wave_id / "retrospective.html").read_text(encoding="utf-8")
    assert "Issues are opened in github:acme/cs." in report
    assert '<a href="https://github.com/acme/cs/issues/1">1</a>' in report
    text = smtp.spool.messages()[0].get_payload()[0].get_content()
    assert "; issue https://github.com/acme/cs/issues/1" in text

    assert pipeline.run_retrospective(wave.wave_id)["tracker_issues"] == 6
    assert len(httpserver.log) == 6 and len(smtp.spool.messages()) == 1
