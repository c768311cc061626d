"""Who is who in chat: the chat users file (`rules/chat_users.yaml`, `NPS_CHAT_USERS`) maps an
owner's or CSM's address to their Slack id, Teams id and name, so an alert mentions them; someone
the file does not know is named by address, never mentioned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from include.nps.core import storage
from include.nps.realtime.chat_messages import slack_text, teams_text

log = logging.getLogger(__name__)

DEFAULT_CHAT_USERS = storage.PROJECT_ROOT / "rules" / "chat_users.yaml"
PERSON_FIELDS = ("slack", "teams", "name", "crm_user_id")


class ChatUsersError(ValueError):
    """The chat users file cannot be used."""


@dataclass(frozen=True)
class Person:
    """An account owner or CSM, as the alerts name them: mentioned when the chat users file knows them."""

    email: str
    slack: str | None = None
    teams: str | None = None
    name: str | None = None
    crm_user_id: str | None = None

    @property
    def slack_mention(self) -> str:
        return f"<@{self.slack}>" if self.slack else slack_text(self.email)

    @property
    def teams_mapped(self) -> bool:
        return bool(self.slack or self.teams or self.name)

    @property
    def teams_tag(self) -> str:
        return f"<at>{self.name or self.email}</at>" if self.teams_mapped else teams_text(self.email)

    def teams_entity(self) -> dict[str, Any]:
        return {
            "type": "mention",
            "text": self.teams_tag,
            "mentioned": {"id": self.teams or self.email, "name": self.name or self.email},
        }


def load_chat_users(path: Path) -> dict[str, Person]:
    """owner address: Person, from the chat users file (missing file: nobody is mentioned)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        log.info("no chat users file at %s: owners are named by address, not mentioned", path)
        return {}
    return _chat_users(str(path), stamp)


@lru_cache(maxsize=4)
def _chat_users(path: str, _stamp: int) -> dict[str, Person]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ChatUsersError(f"{path}: not valid YAML: {exc}") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise ChatUsersError(f"{path}: expected `users:` mapping each owner address to slack, teams, name")
    people = {}
    for email, entry in users.items():
        if not isinstance(entry, dict) or set(entry) - set(PERSON_FIELDS):
            unknown = sorted(set(entry) - set(PERSON_FIELDS)) if isinstance(entry, dict) else entry
            raise ChatUsersError(f"{path}: users.{email}: expected {', '.join(PERSON_FIELDS)}, got {unknown!r}")
        key = str(email).strip().lower()
        people[key] = Person(email=key, **{k: str(v) for k, v in entry.items() if v not in (None, "")})
    return people


def person(people: dict[str, Person], email: str | None) -> Person | None:
    if not email:
        return None
    key = str(email).strip().lower()
    return people.get(key) or Person(email=key)
