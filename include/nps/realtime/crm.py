"""Follow-up tasks in the CRM: one per detractor, opened as soon as the detractor is routed.

The request is a JSON body rendered from a Jinja2 template per CRM in `include/templates/crm/`
(values through `tojson`, so customer text cannot break the JSON). Two ship with the project:
`gainsight_cta` (a Gainsight Cockpit CTA) and `salesforce_task` (a Salesforce Task). The CRM is
reached through the HTTP connection `nps_crm`; which template, which endpoint and where the
answer holds the new task's id are settings (`Profile.from_env`). The id is kept in the ledger
row of the task (`outbox.message_id`, kind `crm_task`) and on the follow-up (`crm_task_id`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from include.nps.core import emails

CRM_CONN_ID = "nps_crm"
KIND = "crm_task"


class CrmSettingsError(ValueError):
    """The CRM settings name a template that does not exist."""


@dataclass(frozen=True)
class Profile:
    """How tasks are opened in one CRM: the body's template, the endpoint (relative to the
    connection's host) and the dotted path of the task id in the JSON answer."""

    template: str
    endpoint: str
    task_id_path: str

    @classmethod
    def from_env(cls) -> Profile:
        """`NPS_CRM_TEMPLATE` (default gainsight_cta), with `NPS_CRM_ENDPOINT` and
        `NPS_CRM_TASK_ID_PATH` overriding the template's defaults."""
        name = os.environ.get("NPS_CRM_TEMPLATE", "").strip() or "gainsight_cta"
        if not (emails.TEMPLATES_DIR / "crm" / f"{name}.json.j2").is_file():
            shipped = ", ".join(sorted(PROFILES))
            raise CrmSettingsError(f"NPS_CRM_TEMPLATE={name!r}: no include/templates/crm/{name}.json.j2 ({shipped})")
        base = PROFILES.get(name, cls(name, "", "id"))
        return cls(
            template=name,
            endpoint=os.environ.get("NPS_CRM_ENDPOINT", "").strip() or base.endpoint,
            task_id_path=os.environ.get("NPS_CRM_TASK_ID_PATH", "").strip() or base.task_id_path,
        )


PROFILES = {
    "gainsight_cta": Profile("gainsight_cta", "/v2/cockpit/cta", "data.0.Gsid"),
    "salesforce_task": Profile("salesforce_task", "/services/data/v61.0/sobjects/Task", "id"),
}


def task_key(wave_id: str, contact_id: str) -> str:
    """The same key for the same follow-up: sent as `Idempotency-Key` and written in the task."""
    return f"nps:{wave_id}:{contact_id}"


def task_request(profile: Profile, context: dict[str, Any]) -> dict[str, Any]:
    """The transport's payload for one task: the rendered body and its idempotency key."""
    key = task_key(context["wave"]["wave_id"], context["r"]["contact_id"])
    body = json.loads(emails.render(f"crm/{profile.template}.json.j2", {**context, "key": key}))
    return {"body": body, "idempotency_key": key}
