"""A data protection request, as the `nps_privacy` DAG's form and the command line give it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from include.nps.privacy import erasure, export

ACTIONS = ("export", "erase", "export_and_erase")


class RequestError(ValueError):
    """The request cannot be carried out as given."""


def handle(
    engine: Engine,
    action: str,
    actor: str,
    email: str | None = None,
    contact_id: str | None = None,
    reason: str = "",
    out: Path | None = None,
) -> dict[str, Any]:
    """Export and/or erase the person; what was done (paths, counts, files to recall)."""
    if action not in ACTIONS:
        raise RequestError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not (email or "").strip() and not (contact_id or "").strip():
        raise RequestError("give the person's email address or contact id")
    done: dict[str, Any] = {"action": action}
    if action in ("export", "export_and_erase"):
        done["export"] = export.export(engine, actor, email=email, contact_id=contact_id, out=out)
    if action in ("erase", "export_and_erase"):
        erased = erasure.erase(engine, actor, email=email, contact_id=contact_id, reason=reason)
        done["erasure"] = {"erasure_id": erased.erasure_id, **erased.summary(), "files_to_recall": erased.files}
    return done
