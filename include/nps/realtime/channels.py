"""Where real-time alerts go: the real-time settings from the environment, and each channel (the
program's Slack channel, Teams, the chat webhook, the VIP and executive channels, the CRM) with
the Airflow connection it needs, which responses it wants and how it renders them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from include.nps.core import storage
from include.nps.core.connections import connection_defined
from include.nps.realtime import crm
from include.nps.realtime.chat_messages import slack_message, teams_message
from include.nps.realtime.chat_people import DEFAULT_CHAT_USERS

SLACK_CONN_ID = "nps_slack"
VIP_CONN_ID = "nps_slack_vip"
EXECUTIVE_CONN_ID = "nps_slack_executive"
TEAMS_CONN_ID = "nps_teams"
CHAT_CONN_ID = "nps_chat"
DETRACTOR_ALERT = "detractor_alert"
RESPONSE_ALERT = "response_alert"
TEAMS_ALERT = "teams_alert"
CHAT_ALERT = "chat_alert"
VIP_ESCALATION = "vip_escalation"
EXECUTIVE_ALERT = "executive_alert"
ALERT_KINDS = (DETRACTOR_ALERT, RESPONSE_ALERT, TEAMS_ALERT, CHAT_ALERT, VIP_ESCALATION, EXECUTIVE_ALERT, crm.KIND)
DETRACTOR_CHANNELS = (DETRACTOR_ALERT, TEAMS_ALERT, CHAT_ALERT)  # where a detractor's alert goes, one kind each
DEFAULT_DELAY_MINUTES = 5.0


@dataclass(frozen=True)
class Settings:
    """Real-time settings, from the environment."""

    band_email_delay: dt.timedelta
    account_url_template: str
    chat_users_file: Path
    post_every_response: bool

    @classmethod
    def from_env(cls) -> Settings:
        """`NPS_BAND_EMAIL_DELAY_MINUTES` (5), `NPS_ACCOUNT_URL_TEMPLATE` (with `{account_id}`),
        `NPS_CHAT_USERS` (rules/chat_users.yaml), `NPS_CHAT_RESPONSES` (`all`, or `detractors`)."""
        users = os.environ.get("NPS_CHAT_USERS", "").strip()
        users_path = Path(users) if users else DEFAULT_CHAT_USERS
        return cls(
            band_email_delay=dt.timedelta(
                minutes=float(os.environ.get("NPS_BAND_EMAIL_DELAY_MINUTES") or DEFAULT_DELAY_MINUTES)
            ),
            account_url_template=os.environ.get("NPS_ACCOUNT_URL_TEMPLATE", "").strip(),
            chat_users_file=users_path if users_path.is_absolute() else storage.PROJECT_ROOT / users_path,
            post_every_response=os.environ.get("NPS_CHAT_RESPONSES", "all").strip().lower() != "detractors",
        )

    def account_url(self, account_id: str) -> str | None:
        if not self.account_url_template:
            return None
        return self.account_url_template.replace("{account_id}", quote(str(account_id), safe=""))


@dataclass(frozen=True)
class Channel:
    kind: str
    conn_id: str
    ledger_channel: str
    wants: Callable[[dict[str, Any]], bool]  # does this response (its alert context) go here?
    render: Callable[[dict[str, Any]], dict[str, Any]]
    transport: Callable[[], Any]


def channels(settings: Settings) -> list[Channel]:
    """Where each response goes, the program channel first; the CRM only when `nps_crm` is defined."""
    from include.nps.delivery.transports import ChatTransport, CrmTransport, SlackWebhookTransport, TeamsTransport

    def slack(conn_id: str) -> Callable[[], Any]:
        return lambda: SlackWebhookTransport(conn_id)

    def slack_post(channel: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda context: slack_message({**context, "channel": channel})

    def posted(context: dict[str, Any]) -> bool:
        return settings.post_every_response or context["detractor"]

    listed = [
        Channel(
            DETRACTOR_ALERT,
            SLACK_CONN_ID,
            "chat",
            lambda c: c["detractor"],
            slack_post("program"),
            slack(SLACK_CONN_ID),
        ),
        Channel(
            RESPONSE_ALERT,
            SLACK_CONN_ID,
            "chat",
            lambda c: posted(c) and not c["detractor"],
            slack_post("program"),
            slack(SLACK_CONN_ID),
        ),
        Channel(TEAMS_ALERT, TEAMS_CONN_ID, "chat", posted, teams_message, lambda: TeamsTransport(TEAMS_CONN_ID)),
        Channel(
            CHAT_ALERT,
            CHAT_CONN_ID,
            "chat",
            lambda c: c["detractor"],
            slack_post("program"),
            lambda: ChatTransport(CHAT_CONN_ID),
        ),
        Channel(VIP_ESCALATION, VIP_CONN_ID, "chat", lambda c: c["r"]["vip"], slack_post("vip"), slack(VIP_CONN_ID)),
        Channel(
            EXECUTIVE_ALERT,
            EXECUTIVE_CONN_ID,
            "chat",
            lambda c: c["band"] == "critical",
            slack_post("executive"),
            slack(EXECUTIVE_CONN_ID),
        ),
    ]
    if connection_defined(crm.CRM_CONN_ID):
        profile = crm.Profile.from_env()
        listed.append(
            Channel(
                crm.KIND,
                crm.CRM_CONN_ID,
                "crm",
                lambda c: c["f"] is not None,
                lambda c: crm.task_request(profile, c),
                lambda: CrmTransport(crm.CRM_CONN_ID, profile.endpoint, profile.task_id_path),
            )
        )
    return listed
