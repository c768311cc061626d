"""Sales decisions: answered in Airflow, or read back from the drop files sales return; both are
stored here and applied to routing the same way (`pipeline.route_detractors`).

The first way is a human-in-the-loop task in Airflow (Required Actions) per detractor that the
routing rules' `decide_in_airflow` names: the answer, or the rule's proposal when nobody answered
by the deadline, is recorded by `record_answer`. Which wins when both exist for a contact: a
person's answer in Airflow wins over a returned file; a returned file wins over a default that
stood at the deadline (the file is someone's decision, the default nobody's).

The fallback, for people without an Airflow login: sales fill the decision column (sales / cs)
of their drop file and put the file back in the wave's `returned/` folder, in the drop location
or in the wave's reports folder (where CS ops save a file sent back by email). Every decision is
checked: an unknown contact or a value other than `sales` or `cs` is quarantined with its file,
row and reason; the others are kept, the later file (by name) winning when two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from include.nps.core import clean_text, csv_files, storage
from include.nps.wave.sales_drops import DECISION_HEADER, unneutralise

CHOICES = ("sales", "cs")
AIRFLOW_SOURCE = "airflow:"  # source of a decision answered in Airflow: airflow:<user name>
DEFAULT_SOURCE = "airflow:default"  # the rule's proposal, which stood when nobody answered in time
DECISION_KEY = csv_files.column_key(DECISION_HEADER)
CONTACT_KEY = "contact_id"
SHEET = "Responses"
SUFFIXES = (".xlsx", ".csv")


@dataclass(frozen=True)
class ReturnedFile:
    name: str
    content: bytes


def parse(returned: ReturnedFile, known: set[str]) -> tuple[dict[str, tuple[str, int]], list[dict]]:
    """(contact id: (decision, row)) and quarantine entries for one returned file."""
    required = (CONTACT_KEY, DECISION_KEY)
    try:
        if returned.name.lower().endswith(".xlsx"):
            table = csv_files.parse_xlsx(returned.content, returned.name, SHEET, required)
        else:
            table = csv_files.parse_csv(returned.content, returned.name, required)
    except csv_files.ExportError as exc:
        return {}, [{"row_number": 0, "field": "(file)", "value": returned.name, "reason": str(exc)}]
    decisions: dict[str, tuple[str, int]] = {}
    problems = list(table.problems)
    for row in table.frame.to_dict("records"):
        number, contact_id = int(row["row_number"]), _text(row[CONTACT_KEY])
        value = _text(row[DECISION_KEY]).lower()
        if not value:
            continue
        if contact_id not in known:
            reason = f"contact {contact_id or '(empty)'} has no response in this wave"
            problems.append({"row_number": number, "field": "contact_id", "value": contact_id, "reason": reason})
        elif value not in CHOICES:
            reason = "the sales decision must be sales or cs"
            problems.append({"row_number": number, "field": DECISION_HEADER, "value": value, "reason": reason})
        else:
            decisions[contact_id] = (value, number)
    return decisions, problems


def _text(value: str) -> str:
    """A cell as typed, without surrounding spaces or the drop's anti-formula apostrophe."""
    return unneutralise(value.strip())


def collect(engine: Engine, wave_id: str, files: list[ReturnedFile], known: set[str]) -> dict[str, str]:
    """Read every returned file, store its decisions and quarantine its bad rows; return all the
    wave's decisions so far (contact id: sales or cs)."""
    now = storage.utcnow()
    for returned in sorted(files, key=lambda f: f.name):
        decisions, problems = parse(returned, known)
        storage.execute(
            engine,
            storage.query("upsert_sales_decision"),
            [
                {
                    "wave_id": wave_id,
                    "contact_id": c,
                    "decision": d,
                    "source": returned.name,
                    "row_number": n,
                    "now": now,
                }
                for c, (d, n) in decisions.items()
            ],
        )
        storage.execute(
            engine,
            storage.query("upsert_quarantine"),
            [{**_storable(p), "wave_id": wave_id, "source": f"returned/{returned.name}"} for p in problems],
        )
    return stored(engine, wave_id)


def record_answer(engine: Engine, wave_id: str, contact_id: str, decision: str, answered_by: str | None) -> None:
    """Store a decision taken in Airflow: a person's (`answered_by`, their user name) replaces any
    other; the default that stood at the deadline (`answered_by` None) only an absent decision."""
    if decision not in CHOICES:
        raise ValueError(f"the sales decision must be {' or '.join(CHOICES)}, not {decision!r}")
    source = f"{AIRFLOW_SOURCE}{answered_by}" if answered_by else DEFAULT_SOURCE
    row = {"wave_id": wave_id, "contact_id": contact_id, "decision": decision, "source": source[:500]}
    storage.execute(engine, storage.query("record_airflow_decision"), [{**row, "now": storage.utcnow()}])


def person_answer(engine: Engine, wave_id: str, contact_id: str) -> tuple[str, str] | None:
    """(decision, user name) a person gave in Airflow for this contact, if one is kept (not a
    default that stood at the deadline, not a returned file's)."""
    row = storage.fetch_one(
        engine,
        "SELECT decision, source FROM sales_decisions WHERE wave_id = :w AND contact_id = :c",
        w=wave_id,
        c=contact_id,
    )
    if row is None or not str(row["source"]).startswith(AIRFLOW_SOURCE) or row["source"] == DEFAULT_SOURCE:
        return None
    return row["decision"], str(row["source"]).removeprefix(AIRFLOW_SOURCE)


def _storable(problem: dict) -> dict:
    """A quarantine entry whose cell text any database takes: control characters (NUL) as escapes."""
    value, reason = clean_text.visible(str(problem["value"]))[:200], clean_text.visible(problem["reason"])
    return {**problem, "value": value, "reason": reason}


def stored(engine: Engine, wave_id: str) -> dict[str, str]:
    rows = storage.fetch_all(engine, "SELECT contact_id, decision FROM sales_decisions WHERE wave_id = :w", w=wave_id)
    return {r["contact_id"]: r["decision"] for r in rows}
