"""The wave's results per contact, for business intelligence: NPS as one churn-risk signal.

One CSV row per contact of the wave's audience (`sql/queries/contact_results.sql` says what each
column means, the churn signal included), written after the detractors are routed to the wave's
reports folder (`reports/<wave>/bi/contact_results.csv`) and, when the wave has a drop location,
to `<drop location>/<wave>/bi/contact_results.csv` (`ObjectStoragePath`: a folder, S3, GCS).

The rows are read as a stream (a server-side cursor on PostgreSQL) and written `CHUNK_ROWS` at a
time, so memory holds one chunk whatever the audience's size. The file is UTF-8 with a header;
text a spreadsheet would run as a formula is neutralised (`sales_drops.neutralise`). It is
written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from include.nps.core import storage
from include.nps.core.connections import reports_dir
from include.nps.wave import waves
from include.nps.wave.sales_drops import neutralise

FILE_NAME = "contact_results.csv"
CHUNK_ROWS = 20_000
COLUMNS = (
    "wave_id",
    "contact_id",
    "account_id",
    "account_name",
    "account_tier",
    "vip",
    "locale",
    "invited",
    "answered",
    "completed",
    "score",
    "band",
    "answered_at",
    "followup_owner_type",
    "followup_owner",
    "followup_status",
    "followup_recovered",
    "followup_closed_at",
    "account_silent",
    "churn_signal",
)
FLAGS = ("vip", "invited", "answered", "account_silent", "followup_recovered")
TIMES = ("answered_at", "followup_closed_at")
TEXT = ("account_name", "account_tier", "locale", "followup_owner")  # from imports and CRMs: neutralised


def export(engine: Engine, wave: waves.WaveParams) -> dict[str, Any]:
    """Write the wave's per-contact results locally and to the drop location; what was written."""
    local = reports_dir(wave.wave_id) / "bi" / FILE_NAME
    counts = write_csv(engine, wave, local)
    path = str(local)
    if wave.drop_location:
        path = _copy_to_drop(local, wave)
    return {**counts, "path": path, "local_path": str(local), "columns": len(COLUMNS)}


def write_csv(engine: Engine, wave: waves.WaveParams, path: Path) -> dict[str, int]:
    """Stream the rows into `path` (replaced whole); the rows and answers written, and high signals."""
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    counts = {"rows": 0, "answered": 0, "high_churn_signal": 0}
    with partial.open("w", encoding="utf-8", newline="") as out, engine.connect() as conn:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        streamed = conn.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS)
        result = streamed.execute(text(storage.query("contact_results")), {"wave_id": wave.wave_id})
        names = list(result.keys())
        while rows := result.fetchmany(CHUNK_ROWS):
            columns = chunk_columns(wave.wave_id, dict(zip(names, zip(*rows, strict=True), strict=True)), pillar_ids)
            writer.writerows(zip(*(columns[name] for name in COLUMNS), strict=True))
            counts["rows"] += len(rows)
            counts["answered"] += columns["answered"].count("true")
            counts["high_churn_signal"] += columns["churn_signal"].count("high")
    partial.replace(path)
    return counts


def chunk_columns(wave_id: str, read: dict[str, tuple], pillar_ids: list[str]) -> dict[str, list[Any]]:
    """A chunk's cells column by column (no dict per row): flags as true/false, times in ISO 8601
    (UTC), text neutralised; None is written as an empty cell."""
    size = len(read["contact_id"])
    columns: dict[str, list[Any]] = {name: list(values) for name, values in read.items()}
    columns["wave_id"] = [wave_id] * size
    answered = read["answered"]
    if pillar_ids:
        columns["completed"] = [
            bool(a) and _all_answered(p, pillar_ids) for a, p in zip(answered, read["pillar_answers"], strict=True)
        ]
    else:
        columns["completed"] = [bool(a) for a in answered]
    for name in (*FLAGS, "completed"):
        columns[name] = [None if v is None else ("true" if v else "false") for v in columns[name]]
    for name in TIMES:
        columns[name] = [None if v is None else _iso(v) for v in read[name]]
    for name in TEXT:
        columns[name] = [neutralise(v) if v else v for v in read[name]]
    return columns


def _all_answered(pillar_answers: str | None, pillar_ids: list[str]) -> bool:
    answers = json.loads(pillar_answers or "{}")
    return all(answers.get(pillar) is not None for pillar in pillar_ids)


def _iso(value: Any) -> str | None:
    moment = storage.as_utc(value)
    return moment.isoformat() if isinstance(moment, dt.datetime) else None


def _copy_to_drop(local: Path, wave: waves.WaveParams) -> str:
    """Copy the file to `<drop location>/<wave>/bi/`, replacing the last copy; its location."""
    from airflow.sdk import ObjectStoragePath

    folder = ObjectStoragePath(wave.drop_location, conn_id=wave.drop_storage_conn_id or None) / wave.wave_id / "bi"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE_NAME
    with local.open("rb") as source, target.open("wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
    return str(target)
