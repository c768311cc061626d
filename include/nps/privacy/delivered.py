"""Files that left the NPS DB with a person in them: raw-data drops, reports, rejected-rows CSVs.

They were written to the wave's reports folder (`reports/<wave>/`) and, for drops stored in a drop
location, there too; the drops and the retrospective were emailed. An erasure cannot reach into a
salesperson's mailbox: it lists each file that holds the person (read inside spreadsheets and zip
files too), with its kind, where it is and to whom and when it was sent, so it can be recalled.
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from include.nps.core import storage
from include.nps.core.connections import nps_home
from include.nps.privacy.subjects import MIN_TEXT_CHARS, Subject
from include.nps.wave import waves

PHASES = ("midwave", "postwave")
COMPLETE = "all-accounts"  # sales_drops.COMPLETE: the complete file's name part
MIN_ID_CHARS = 6  # a shorter contact id ("C1") would be found inside others; addresses and names suffice
MAX_FILE_BYTES = 200 * 1024 * 1024  # a larger file is listed as "not read" rather than read


def wave_folder(wave_id: str) -> Path:
    """The wave's local reports folder (as `connections.reports_dir` names it, without creating it)."""
    return nps_home() / "reports" / wave_id.replace(":", "_")


def kind_of(relative: Path) -> str:
    """What a file of a wave's folder is, by where the wave writes it."""
    top = relative.parts[0] if relative.parts else ""
    if top in PHASES:
        return f"drop_{top}"
    if top == "quarantine":
        return "rejected_rows"
    if relative.name.startswith("retrospective"):
        return "retrospective"
    if top == "returned":
        return "returned_decisions"
    return "other"


def wave_files(wave_id: str, drop_root: Any = None) -> Iterator[tuple[str, Any, str]]:
    """(kind, path, location) of every file of the wave: local folder, then the drop location."""
    folder = wave_folder(wave_id)
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            yield kind_of(path.relative_to(folder)), path, "reports folder"
    if drop_root is not None and drop_root.exists():
        for path in sorted(p for p in drop_root.rglob("*") if p.is_file()):
            yield kind_of(Path(str(path.relative_to(drop_root)))), path, "drop location"


def drop_root(params: dict[str, Any]) -> Any:
    """The wave's folder in its drop location (`ObjectStoragePath`), when its drops are stored there."""
    if "storage" not in (params.get("drop_channels") or []) or not params.get("drop_location"):
        return None
    from airflow.sdk import ObjectStoragePath

    return (
        ObjectStoragePath(params["drop_location"], conn_id=params.get("drop_storage_conn_id") or None)
        / params["wave_id"]
    )


def files_of(conn: Connection, subject: Subject) -> list[dict[str, Any]]:
    """Every delivered file of the person's waves that holds their address, name or contact id."""
    ids = [subject.contact_id] if subject.contact_id and len(subject.contact_id) >= MIN_ID_CHARS else []
    # the file's bytes are lowered as ASCII: a needle both so and fully lowered
    texts = [t for t in subject.texts if len(t.strip()) >= MIN_TEXT_CHARS]  # a report quotes comments
    named = [*subject.emails, *subject.names, *ids, *texts, *map(html.escape, texts)]
    needles = sorted({v.encode() for n in named if n for v in (n.lower(), _ascii_lower(n))})
    if not needles or subject.contact_id is None:
        return []
    found = []
    for wave_id, params in _waves_of(conn, subject.contact_id):
        sent = _sent(conn, wave_id)
        for kind, path, location in wave_files(wave_id, drop_root({**params, "wave_id": wave_id})):
            if not _holds(path, needles):
                continue
            recipients = sent.get(kind, [])
            if COMPLETE in path.name:  # sales ops' complete file
                own = [r for r in recipients if r["address"] in (params.get("sales_recipients") or [])]
            else:  # a salesperson's own file
                own = [r for r in recipients if waves.slug(r["address"]) in path.name]
            found.append(
                {
                    "wave_id": wave_id,
                    "kind": kind,
                    "path": str(path),
                    "location": location,
                    "sent_to": [r["address"] for r in (own or recipients)],
                    "sent_at": max((r["sent_at"] for r in (own or recipients)), default=None),
                }
            )
    return found


def _waves_of(conn: Connection, contact_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute(
        text(
            "SELECT w.wave_id, w.params FROM waves w WHERE w.wave_id IN "
            "(SELECT wave_id FROM wave_audience WHERE contact_id = :c "
            "UNION SELECT wave_id FROM responses WHERE contact_id = :c) "
            "ORDER BY w.wave_id"
        ),
        {"c": contact_id},
    ).all()
    return [(row[0], json.loads(row[1] or "{}")) for row in rows]


def _sent(conn: Connection, wave_id: str) -> dict[str, list[dict[str, Any]]]:
    """Colleagues each of the wave's files went to by email: (address, when) per kind."""
    rows = conn.execute(
        text(
            "SELECT kind, address, sent_at FROM outbox WHERE wave_id = :w AND status = 'sent' "
            "AND kind IN ('drop_midwave', 'drop_postwave', 'retrospective') ORDER BY kind, address"
        ),
        {"w": wave_id},
    ).all()
    found: dict[str, list[dict[str, Any]]] = {}
    for kind, address, sent_at in rows:
        at = storage.as_utc(sent_at)
        found.setdefault(kind, []).append({"address": address, "sent_at": at.isoformat() if at else None})
    return found


def _ascii_lower(value: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in value)


def _holds(path: Any, needles: list[bytes]) -> bool:
    """Whether the file (or a member of it, when it is a zip: xlsx is one) mentions any needle."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES)
    except OSError:
        return False
    return any(needle in blob for blob in _blobs(data) for needle in needles)


def _blobs(data: bytes) -> Iterator[bytes]:
    yield data.lower()
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    yield from _blobs(archive.read(name))
        except zipfile.BadZipFile:
            return
