"""Export a person: everything the NPS DB holds about them, as one JSON and a readable HTML page.

It reads the same inventory the erasure works through (`inventory.TABLES`): the person's rows of
every pseudonymised and deleted table, whole, and the rows of shared free-text tables that mention
them (their key and the columns that do, not other people's text), with the delivered files that
hold them. Whatever an erasure would remove is in the export.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from include.nps.core import storage
from include.nps.core.connections import nps_home
from include.nps.privacy import audit, delivered, inventory, subjects
from include.nps.privacy.subjects import Subject

FORMAT_VERSION = 1


def collect(conn: Connection, subject: Subject) -> dict[str, Any]:
    """The export's content: per inventory table, the person's rows."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in inventory.TABLES:
        if table.mode == "scrub":
            found = [{**key, "mentioned_in": sorted(values)} for key, values in subjects.mentions(conn, table, subject)]
        else:
            found = subjects.rows(conn, table, subject)
        if found:
            tables.setdefault(table.name, []).extend(subjects.plain_row(row) for row in found)
    return {
        "format_version": FORMAT_VERSION,
        "generated_at": storage.utcnow().isoformat(),
        "subject": {"contact_id": subject.contact_id, "emails": subject.emails, "names": subject.names},
        "tables": tables,
        "delivered_files": delivered.files_of(conn, subject),
    }


def export(
    engine: Engine, actor: str, email: str | None = None, contact_id: str | None = None, out: Path | None = None
) -> dict[str, Any]:
    """Write the person's JSON and HTML export (to `out`, a folder, else `<NPS_HOME>/privacy/`);
    record the export in the audit trail; return the paths and counts."""
    with engine.connect() as conn:
        subject = subjects.find(conn, email, contact_id)
        content = collect(conn, subject)
    export_id = uuid.uuid4().hex
    folder = out or nps_home() / "privacy" / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"export-{export_id}.json"
    html_path = folder / f"export-{export_id}.html"
    json_path.write_text(json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    html_path.write_text(render_html(content), encoding="utf-8")
    counts = {name: len(rows) for name, rows in content["tables"].items()}
    audit.record(engine, actor, "export", export_id, details={"rows": counts, "files": len(content["delivered_files"])})
    return {"export_id": export_id, "json": str(json_path), "html": str(html_path), "rows": counts}


def render_html(content: dict[str, Any]) -> str:
    """The export as a page a person can read (every value escaped)."""
    from include.nps.core import emails

    template = emails.environment().get_template("privacy/export.html")
    return template.render(export=content)
