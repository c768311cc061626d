"""The CRM status sync: each follow-up in progress with a CRM task takes the state its task's status
maps to (`crm_status_map` of `rules/followups.yaml`), forward only along allowed moves.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, inspect

from include.nps.closed_loop import followups
from include.nps.core import storage
from include.nps.delivery.transports import PermanentFailure

log = logging.getLogger(__name__)


def has_column(engine: Engine, table: str, column: str) -> bool:
    return column in {c["name"] for c in inspect(engine).get_columns(table)}


def sync_crm(
    engine: Engine, fetch_status: Callable[[str], str | None], rules: followups.Rules, now: dt.datetime
) -> dict[str, int]:
    """Move each follow-up in progress that has a CRM task to the state of the task's status
    (`crm_status_map`), forward only along allowed moves (a CRM that lags behind the call log
    changes nothing). `fetch_status(task_id)` is the task's status, None when the CRM has no
    such task. Skipped when the follow-ups have no `crm_task_id` column (migration 008)."""
    counts = {
        "checked": 0,
        "moved": 0,
        "unchanged": 0,
        "unknown_status": 0,
        "missing_task": 0,
        "refused": 0,
        "conflicts": 0,
    }
    if not has_column(engine, "followups", "crm_task_id"):
        log.info("followups.crm_task_id does not exist yet: nothing to sync")
        return counts
    for row in storage.fetch_all(engine, storage.query("followups_with_crm_task")):
        counts["checked"] += 1
        try:
            crm_status = fetch_status(str(row["crm_task_id"]))
        except PermanentFailure as exc:  # this task only: the others are still synced
            counts["refused"] += 1
            log.warning("CRM task %s not synced: %s", row["crm_task_id"], exc)
            continue
        if crm_status is None:
            counts["missing_task"] += 1
            continue
        target = rules.crm_status_map.get(crm_status.strip().casefold())
        if target is None:
            counts["unknown_status"] += 1
            log.warning("CRM task %s has status %r, not in crm_status_map", row["crm_task_id"], crm_status)
        followup = followups.load(engine, row["wave_id"], row["contact_id"])
        route = followups.path_between(followup["status"], target) if target else None
        if not route:
            counts["unchanged"] += target is not None
            if followup["crm_status"] != crm_status:
                seen = {**_key(row), "crm_status": crm_status[:64], "now": now}
                storage.execute(engine, storage.query("record_crm_status"), seen)
            continue
        assert target is not None  # a route needs a target
        try:
            changes, event = _crm_change(followup, target, crm_status, row["crm_task_id"], now)
            followups.apply_change(engine, followup, changes, event, None, now)
        except followups.StaleFollowup:
            counts["conflicts"] += 1  # changed meanwhile: the next sync looks again
            continue
        counts["moved"] += 1
    return counts


def _crm_change(
    followup: dict[str, Any], target: str, crm_status: str, task_id: str, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The changes and the call-log row of moving a follow-up to `target` because of its CRM task."""
    changes: dict[str, Any] = {"status": target, "crm_status": crm_status[:64], "crm_synced_at": now}
    if target in ("closed", "unreachable"):
        changes |= {"claimed_by": None, "claimed_at": None}
    if target == "closed":
        changes["closed_at"] = now
    note = f"CRM task {task_id}: {crm_status}"
    return changes, {"actor": "crm", "source": "crm", "action": "crm_sync", "outcome": crm_status[:64], "note": note}


def _key(row: dict[str, Any]) -> dict[str, str]:
    return {"wave_id": row["wave_id"], "contact_id": row["contact_id"]}


def crm_status_fetcher(conn_id: str = "nps_crm") -> Callable[[str], str | None]:
    """`GET <connection host>/tasks/<task id>` -> `{"id": ..., "status": "In Progress"}` through the
    Airflow HTTP connection `conn_id` (auth and headers from the connection); 404 -> None.
    Network errors, 408, 425, 429 and 5xx raise TransientFailure (the task retries); any other refusal
    (401, 403, ...) raises PermanentFailure: the connection needs fixing."""
    from urllib.parse import quote

    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from include.nps.delivery.transports import TransientFailure, retryable_status

    hook = HttpHook(method="GET", http_conn_id=conn_id)

    def fetch(task_id: str) -> str | None:
        try:
            response = hook.run(
                endpoint=f"tasks/{quote(task_id, safe='')}", extra_options={"check_response": False, "timeout": 30}
            )
        except requests.RequestException as exc:
            raise TransientFailure(f"CRM unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if retryable_status(response.status_code):
            raise TransientFailure(f"CRM answered {response.status_code} for task {task_id}")
        if response.status_code >= 400:
            raise PermanentFailure(f"CRM refused task {task_id}: {response.status_code} {response.text[:200]}")
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError) as exc:
            raise PermanentFailure(f"CRM answered task {task_id} with no JSON object: {response.text[:200]}") from exc
        return str(status) if status is not None else None

    return fetch


def run_crm_sync(conn_id: str = "nps_crm") -> dict[str, Any]:
    """Sync from the CRM behind `conn_id`; skipped (and said so) when that connection is not set."""
    from include.nps.core.connections import connection_defined, nps_engine

    if not connection_defined(conn_id):
        log.info("no %s connection: CRM status sync skipped", conn_id)
        return {"skipped": f"no {conn_id} connection"}
    return sync_crm(nps_engine(), crm_status_fetcher(conn_id), followups.load_rules(), storage.utcnow())
