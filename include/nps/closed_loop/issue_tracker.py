"""Action items as issues in the team's tracker (Jira or GitHub), each opened once.

The tracker is the HTTP connection `nps_tracker`; without it nothing is opened and the items stay
rows of `action_items`. Host: the API's base URL (`https://acme.atlassian.net`,
`https://api.github.com`). Login and password: basic auth (Jira Cloud: the account's email and an
API token); a password alone: a bearer token (GitHub: a token allowed to write issues). Extra:

    {"flavour": "jira", "project": "CSI", "issue_type": "Task"}     POST /rest/api/2/issue
    {"flavour": "github", "repo": "acme/cs-improvements"}          POST /repos/{owner}/{repo}/issues

and optionally `labels` (added to every issue), `assignees` ({item owner's address: tracker login},
for GitHub's assignees; Jira issues name the owner in the description) and `headers`. The request
body is rendered from `include/templates/tracker/<flavour>_issue.json.j2`, every value through
`tojson`.

Exactly once: each item is a row of the outbox ledger (kind `tracker_issue`, recipient the item
key, channel `tracker`) before its request. The row is claimed (`sending`) before the POST and the
issue's link recorded after; a run that died between the two finds the row still `sending` and
holds it `in_doubt` ("outcome unknown") rather than posting again, so a crash can cost an issue (the
item key is in every issue, to search for) but never make two. 408, 425, 429, 5xx and network
errors leave the row pending and fail the task, whose retry sends what is left (3 attempts in all);
any other 4xx is recorded failed and never retried. Sent links are then copied to
`action_items.tracker_issue`; an item that names an issue already, or is no longer open, is never sent.

Customer text cannot mention, link or format: in Jira wiki markup every special character is
backslash-escaped and each quote is one `bq.` line; in GitHub markdown each quote is a fenced code
block (its fence longer than any run of backticks in it), where nothing is a mention, link or HTML.
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Engine

from include.nps.core import emails, storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import PermanentFailure, TransientFailure, retryable_status
from include.nps.wave import retrospective
from include.nps.wave.comment_parts import Parts

TRACKER_CONN_ID = "nps_tracker"
KIND = "tracker_issue"
CHANNEL = "tracker"
# An issue tracker takes no idempotency key: a create interrupted by a crash may have made the
# issue, so it is held in doubt for a person rather than made a second time.
IN_DOUBT_HELD = outbox.DeliveryPolicy(in_doubt="hold")
FLAVOURS = ("jira", "github")
EXTRA_FIELDS = ("flavour", "project", "repo", "issue_type", "labels", "assignees", "headers")
REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
JIRA_SPECIAL = frozenset("\\[]{}*_-+^~|!#?")
MARKDOWN_SPECIAL = frozenset("\\`*_{}[]<>()#+-.!|~@")  # @ too: no mention of a person or team
SUMMARY_CHARS = 250
TIMEOUT_S = 30


class TrackerSettingsError(ValueError):
    """The `nps_tracker` connection cannot be used as it is."""


@dataclass(frozen=True)
class Tracker:
    """Where and how issues are opened (from the `nps_tracker` connection)."""

    flavour: str
    base_url: str
    project: str = ""
    repo: str = ""
    issue_type: str = "Task"
    labels: tuple[str, ...] = ()
    assignees: dict[str, str] = field(default_factory=dict)
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> str:
        return "/rest/api/2/issue" if self.flavour == "jira" else f"/repos/{self.repo}/issues"

    @property
    def address(self) -> str:
        """Where an item's issue goes, as the ledger row's address."""
        return f"jira:{self.project}" if self.flavour == "jira" else f"github:{self.repo}"

    def issue_link(self, answer: Any) -> str | None:
        """The new issue's link from the tracker's JSON answer (Jira: browse URL of its key)."""
        if not isinstance(answer, dict):
            return None
        if self.flavour == "jira":
            return f"{self.base_url}/browse/{answer['key']}" if answer.get("key") else None
        return answer.get("html_url") or None


def settings(conn_id: str = TRACKER_CONN_ID) -> Tracker | None:
    """The tracker of connection `conn_id`, None when there is no such connection."""
    from include.nps.core.connections import _airflow_connection

    conn = _airflow_connection(conn_id)
    if conn is None:
        return None
    return from_connection(conn.host, conn.schema, conn.port, conn.login, conn.password, conn.extra_dejson, conn_id)


def from_connection(
    host: str | None,
    schema: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
    conn_id: str = TRACKER_CONN_ID,
) -> Tracker:
    """Check the connection's fields; TrackerSettingsError names every problem."""
    problems = [
        f"extra.{key}: unknown field; known: {', '.join(EXTRA_FIELDS)}" for key in extra if key not in EXTRA_FIELDS
    ]
    if not host:
        problems.append("host: give the tracker API's base URL, like https://acme.atlassian.net")
    flavour = extra.get("flavour")
    if flavour not in FLAVOURS:
        problems.append(f"extra.flavour: must be 'jira' or 'github', got {flavour!r}")
    project, repo = extra.get("project") or "", extra.get("repo") or ""
    if flavour == "jira" and not (isinstance(project, str) and project.strip()):
        problems.append("extra.project: the Jira project key issues go to, like CSI")
    if flavour == "github" and not (isinstance(repo, str) and REPO.match(repo)):
        problems.append(f"extra.repo: the GitHub repository as owner/name, got {repo!r}")
    labels = extra.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and x and not re.search(r"\s", x) for x in labels):
        problems.append(f"extra.labels: a list of labels without spaces, got {labels!r}")
    for name in ("assignees", "headers"):
        value = extra.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            problems.append(f"extra.{name}: a mapping of text to text")
    issue_type = extra.get("issue_type", "Task")
    if not isinstance(issue_type, str) or not issue_type.strip():
        problems.append(f"extra.issue_type: a Jira issue type name, like Task, got {issue_type!r}")
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise TrackerSettingsError(f"connection {conn_id!r} has {len(problems)} problem(s):\n{listed}")
    base = str(host).rstrip("/") if "://" in str(host) else f"{schema or 'https'}://{host}"
    if port and f":{port}" not in base:
        base = f"{base}:{port}"
    return Tracker(
        flavour=str(flavour),
        base_url=base.rstrip("/"),
        project=str(project).strip(),
        repo=str(repo),
        issue_type=str(issue_type).strip(),
        labels=tuple(labels),
        assignees=dict(extra.get("assignees", {})),
        login=login or None,
        password=password or None,
        headers=dict(extra.get("headers", {})),
    )


# --- escaping and rendering ---------------------------------------------------------------------


def escape_line(value: Any, special: frozenset[str]) -> str:
    """Our own text (titles, names) on one line, every character of `special` backslash-escaped:
    Jira wiki markup with JIRA_SPECIAL, GitHub markdown with MARKDOWN_SPECIAL."""
    text = " ".join(str(value if value is not None else "").split())
    return "".join(f"\\{char}" if char in special else char for char in text)


def fenced(value: Any) -> str:
    """Customer text as a markdown fenced code block: shown as written, never a mention, a link
    or HTML; the fence is longer than any run of backticks in the text."""
    text = "\n".join(str(value if value is not None else "").splitlines()).strip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


@cache
def _environment() -> Environment:
    env = Environment(  # noqa: S701 (JSON bodies: every value goes through tojson, never into HTML)
        loader=FileSystemLoader(emails.TEMPLATES_DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        jira=partial(escape_line, special=JIRA_SPECIAL),
        md=partial(escape_line, special=MARKDOWN_SPECIAL),
        fenced=fenced,
    )
    return env


def issue_request(
    tracker: Tracker, wave: dict[str, Any], item: dict[str, Any], quotes: list[dict[str, Any]]
) -> dict[str, Any]:
    """The payload for one item's issue: its endpoint and the rendered JSON body."""
    risk = item.get("risk") or item["priority"]
    labels = [*tracker.labels, "nps-retrospective", f"risk-{risk}"] + (
        [f"theme-{item['theme']}"] if item.get("theme") else []
    )
    context = {
        "tracker": tracker,
        "wave": wave,
        "item": {**item, "risk": risk, "due_date": str(item["due_date"])[:10]},
        "quotes": quotes,
        "summary": f"[NPS {wave['name']}] {item['title']}"[:SUMMARY_CHARS],
        "priority": risk.capitalize(),
        "labels": list(dict.fromkeys(labels)),
        "assignees": [tracker.assignees[item["owner"]]] if item["owner"] in tracker.assignees else [],
        "reference": f"nps:{wave['wave_id']}:{item['item_key']}",
    }
    body = json.loads(_environment().get_template(f"tracker/{tracker.flavour}_issue.json.j2").render(**context))
    return {"path": tracker.path, "body": body}


# --- sending ------------------------------------------------------------------------------------


class TrackerTransport(AbstractContextManager):
    """POSTs issue requests to the tracker; the new issue's link goes in the payload's
    "Message-ID", which the ledger keeps."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def __enter__(self) -> TrackerTransport:
        import requests

        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", **self.tracker.headers})
        if self.tracker.flavour == "github":
            self._session.headers.setdefault("X-GitHub-Api-Version", "2022-11-28")
            self._session.headers["Accept"] = "application/vnd.github+json"
        if self.tracker.login:
            self._session.auth = (self.tracker.login, self.tracker.password or "")
        elif self.tracker.password:
            self._session.headers["Authorization"] = f"Bearer {self.tracker.password}"
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._session.close()

    def send(self, payload: dict[str, Any]) -> None:
        import requests

        service = f"tracker {self.tracker.address}"
        try:
            response = self._session.post(
                self.tracker.base_url + payload["path"], json=payload["body"], timeout=TIMEOUT_S, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise TransientFailure(f"{service} unreachable: {exc}") from exc
        status = response.status_code
        if retryable_status(status):
            raise TransientFailure(f"{service} answered {status}")
        if status >= 300:
            raise PermanentFailure(f"{service} refused the issue: {status} {response.text[:300]}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        link = self.tracker.issue_link(answer)
        if not link:
            raise PermanentFailure(
                f"{service} answered {status} without an issue key or link (the issue may exist; not retried): "
                f"{response.text[:200]}"
            )
        payload["Message-ID"] = link[:254]


def open_issues(
    engine: Engine,
    tracker: Tracker,
    wave: dict[str, Any],
    items: list[dict[str, Any]],
    parts: list[dict[str, Any]] | Parts,
) -> outbox.Outcome:
    """One issue per open item without one, through the ledger (see the module docstring); the
    links of the issues created are then on the items. Raises `outbox.DeliveryIncomplete` when
    some hit a transient failure (the task's retry sends them)."""
    candidates = [i for i in items if not i.get("tracker_issue") and (i.get("status") or "open") == "open"]
    outbox.enqueue(engine, wave["wave_id"], KIND, [(i["item_key"], tracker.address) for i in candidates], CHANNEL)
    by_key = {item["item_key"]: item for item in items}

    def render(row: dict[str, Any]) -> dict[str, Any]:
        item = by_key.get(row["recipient"])
        if item is None:
            raise PermanentFailure(f"action item {row['recipient']} no longer exists")
        if item.get("tracker_issue"):
            raise PermanentFailure(f"the item already names an issue: {item['tracker_issue']}")
        return issue_request(tracker, wave, item, retrospective.item_quotes(item, parts, items))

    try:
        with TrackerTransport(tracker) as transport:
            return outbox.deliver(engine, wave["wave_id"], KIND, render, transport, policy=IN_DOUBT_HELD)
    finally:
        storage.execute(engine, storage.query("store_tracker_issues"), {"wave_id": wave["wave_id"]})
