"""What the chat alerts say: customer text escaped for Slack mrkdwn and for Teams Adaptive Cards
(no mention, link, heading or list can be smuggled in), and the alert templates (internal, in
English) under `include/templates/chat/`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from include.nps.core import emails, storage

TEAMS_SPECIALS = "\\`*_~[]"  # inline markdown; line-start markers (# - + 1.) are handled apart
TEAMS_LINE_START = re.compile(r"^(\s*)(#|-|\+|\d+(?=\.))(\.?)", re.MULTILINE)


def slack_text(value: Any) -> str:
    """Customer text for Slack mrkdwn: `&`, `<`, `>` as entities, so `<!channel>`, `<@U1>` or
    `<http://x|y>` stay text (no mention, no link)."""
    return emails.chat_escape(value)


def slack_quote(value: Any) -> str:
    """A comment as a Slack block quote, every line escaped and quoted."""
    return "\n".join(f"> {slack_text(line)}" for line in str(value).splitlines() or [""])


def teams_text(value: Any) -> str:
    """Customer text for a Teams Adaptive Card TextBlock (which renders markdown): HTML specials
    as entities (no `<at>` mention, no tag) and every markdown special behind a backslash."""
    escaped = emails.chat_escape(value)
    inline = "".join(f"\\{char}" if char in TEAMS_SPECIALS else char for char in escaped)
    return TEAMS_LINE_START.sub(_escape_line_start, inline)


def _escape_line_start(found: re.Match[str]) -> str:
    """`# `, `- `, `+ ` and `1. ` at a line's start would make a heading or a list."""
    indent, marker, dot = found.groups()
    return f"{indent}{marker}\\." if dot else f"{indent}\\{marker}"


def utc_minute(value: dt.datetime | None) -> str:
    return "n/a" if value is None else f"{storage.as_utc(value):%Y-%m-%d %H:%M} UTC"


@cache
def templates() -> Environment:
    """Chat messages (Slack mrkdwn, Teams cards as JSON): internal, in English."""
    env = Environment(
        loader=FileSystemLoader(emails.TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(slack_text=slack_text, slack_quote=slack_quote, teams_text=teams_text, utc=utc_minute)
    return env


def slack_message(context: dict[str, Any]) -> dict[str, Any]:
    return {"text": templates().get_template("chat/response_alert.slack.txt").render(**context).strip()}


def teams_message(context: dict[str, Any]) -> dict[str, Any]:
    return json.loads(templates().get_template("chat/response_alert.teams.json.j2").render(**context))
