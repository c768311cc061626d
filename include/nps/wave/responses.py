"""Recording what customers tell us: responses and opt-outs, and reading them back."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from include.nps.core import clean_text, i18n, storage

if TYPE_CHECKING:
    import pandas as pd

MAX_COMMENT_LENGTH = 2000
# A provisional answer within this time of its link's probe is a scanner's: withdrawn, or not taken.
PROBE_WINDOW = dt.timedelta(minutes=10)
PILLAR_SCALES = {"0-10": (0, 10), "1-5": (1, 5)}


class ResponseRejected(ValueError):
    """A submission that cannot be recorded; the message is safe to show the customer."""

    def __init__(self, code: str, field: str = "") -> None:
        super().__init__(f"{code}: {field}" if field else code)
        self.code, self.field = code, field


@dataclass(frozen=True)
class SurveyContext:
    wave: dict[str, Any]
    contact: dict[str, Any]
    pillars: list[dict[str, Any]]
    response: dict[str, Any] | None

    def is_open(self, now: dt.datetime) -> bool:
        """Answers are taken while the wave is open and before its close time."""
        return self.wave["status"] == "open" and self.wave["close_at"] > now


def survey_context(engine: Engine, wave_id: str, contact_id: str) -> SurveyContext:
    """The wave, the invited contact and any earlier answer; ResponseRejected if not invited."""
    invited = storage.fetch_one(engine, storage.query("invitation"), wave_id=wave_id, contact_id=contact_id)
    if invited is None:
        raise ResponseRejected("invalid")
    params = json.loads(invited["params"])
    response = storage.fetch_one(
        engine,
        "SELECT score, comment, pillar_answers, completed FROM responses WHERE wave_id = :w AND contact_id = :c",
        w=wave_id,
        c=contact_id,
    )
    if response:
        response["pillar_answers"] = json.loads(response["pillar_answers"])
        response["completed"] = bool(response["completed"])
    close_at = storage.as_utc(invited["close_at"])
    wave = {
        "wave_id": wave_id,
        "name": invited["wave_name"],
        "status": invited["status"],
        "product": params["product"],
        "close_at": close_at,
        "flash_at": storage.as_utc(invited["flash_at"]) or close_at,
    }
    zone = i18n.reader_zone(invited["timezone"], invited["account_country"], invited["wave_country"])
    contact = {"contact_id": contact_id, "name": invited["name"], "locale": invited["locale"], "zone": zone}
    return SurveyContext(wave=wave, contact=contact, pillars=params.get("pillar_questions", []), response=response)


def parse_score(raw: str | None) -> int | None:
    """A score from a form or a link: an integer 0-10 written in digits, else None."""
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    score = int(text)
    return score if 0 <= score <= 10 else None


def submitted_answer(form: dict[str, str], pillars: list[dict[str, Any]]) -> dict[str, Any]:
    """What the respondent sent, kept as far as it is usable, to show the form again after an error."""
    answers = {}
    for pillar in pillars:
        raw = (form.get(f"pillar_{pillar['id']}") or "").strip()
        low, high = PILLAR_SCALES[pillar["scale"]]
        if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:
            answers[pillar["id"]] = int(raw)
    comment = clean_text.clean_multiline(form.get("comment") or "")
    return {"score": parse_score(form.get("score")), "comment": comment, "pillars": answers}


def parse_submission(form: dict[str, str], pillars: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate a submitted form into score, comment and pillar answers.

    The comment is recorded, never refused, for the characters it holds: line breaks become `\\n`,
    tabs stay, and NUL, other control characters and bidi overrides are removed (the database
    refuses NUL; the others garble the alerts and emails that quote the comment).
    """
    score = parse_score(form.get("score"))
    if score is None:
        raise ResponseRejected("score_missing")
    comment = clean_text.clean_multiline(form.get("comment") or "").strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ResponseRejected("comment_too_long")
    answers: dict[str, int] = {}
    for pillar in pillars:
        raw = (form.get(f"pillar_{pillar['id']}") or "").strip()
        if not raw:
            continue
        low, high = PILLAR_SCALES[pillar["scale"]]
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise ResponseRejected("pillar_out_of_range", pillar["id"])
        answers[pillar["id"]] = int(raw)
    return {"score": score, "comment": comment or None, "pillar_answers": answers}


def record_response(engine: Engine, wave_id: str, contact_id: str, answer: dict[str, Any]) -> int:
    """One response per invitation: a later submission before close updates it, and every
    revision is kept in `response_history`. Returns the revision written."""
    key = {"wave_id": wave_id, "contact_id": contact_id}
    row = {
        **key,
        "score": answer["score"],
        "comment": answer["comment"],
        "pillar_answers": storage.dumps(answer["pillar_answers"]),
        "now": storage.utcnow(),
    }
    with engine.begin() as conn:
        if not conn.execute(text(storage.query("upsert_response")), row).rowcount:
            raise ResponseRejected("closed")
        conn.execute(text(storage.query("record_response_revision")), key)
        return int(
            conn.execute(
                text("SELECT revision FROM responses WHERE wave_id = :wave_id AND contact_id = :contact_id"), key
            ).scalar_one()
        )


def record_provisional(engine: Engine, wave_id: str, contact_id: str, score: int) -> bool:
    """The score clicked in the email, posted by the survey page's script once a person looked at
    the page: recorded as a provisional answer (`completed` false) that the form's Send completes.
    Nothing is written over a sent answer, after close, or within `PROBE_WINDOW` of the link's
    probe. Whether it was written."""
    now = storage.utcnow()
    key = {"wave_id": wave_id, "contact_id": contact_id}
    row = {**key, "score": score, "now": now, "probe_since": now - PROBE_WINDOW}
    with engine.begin() as conn:
        if not conn.execute(text(storage.query("upsert_provisional_response")), row).rowcount:
            return False
        conn.execute(text(storage.query("record_response_revision")), key)
    return True


def record_probe(engine: Engine, wave_id: str, contact_id: str) -> int:
    """The link's hidden probe was fetched: a scanner read the page. A provisional answer written
    within `PROBE_WINDOW` before is withdrawn (with its revisions); returns how many were."""
    now = storage.utcnow()
    key = {"wave_id": wave_id, "contact_id": contact_id}
    recent = {**key, "since": now - PROBE_WINDOW}
    provisional = (
        "SELECT 1 FROM responses r WHERE r.wave_id = :wave_id AND r.contact_id = :contact_id"
        " AND r.completed = FALSE AND r.updated_at > :since"
    )
    with engine.begin() as conn:
        conn.execute(text(storage.query("record_link_probe")), {**key, "now": now})
        if conn.execute(text(provisional), recent).first() is None:
            return 0
        conn.execute(text("DELETE FROM response_history WHERE wave_id = :wave_id AND contact_id = :contact_id"), key)
        conn.execute(text("DELETE FROM responses WHERE wave_id = :wave_id AND contact_id = :contact_id"), key)
    return 1


def count_answered(engine: Engine, wave_id: str, until: dt.datetime) -> int:
    """Responses of a wave first given by `until`."""
    row = storage.fetch_one(
        engine,
        "SELECT COUNT(*) AS n FROM responses WHERE wave_id = :w AND answered_at <= :t AND quarantine_reason IS NULL",
        w=wave_id,
        t=until,
    )
    assert row is not None  # COUNT(*) always gives a row
    return int(row["n"])


def set_aside(engine: Engine, wave_id: str, rejected: dict[str, list[str]]) -> None:
    """Mark the responses the check rejected (with why) and clear the mark on all others, so a
    re-run of the check leaves exactly its own verdict (one transaction: never half of each)."""
    marks = [
        {"w": wave_id, "c": contact_id, "reason": "; ".join(reasons)[:1000]} for contact_id, reasons in rejected.items()
    ]
    with engine.begin() as conn:
        conn.execute(text("UPDATE responses SET quarantine_reason = NULL WHERE wave_id = :w"), {"w": wave_id})
        if marks:
            conn.execute(
                text("UPDATE responses SET quarantine_reason = :reason WHERE wave_id = :w AND contact_id = :c"), marks
            )


def record_opt_out(engine: Engine, contact_id: str) -> None:
    storage.execute(
        engine,
        "UPDATE contacts SET opted_out_at = :now WHERE contact_id = :c AND opted_out_at IS NULL",
        {"now": storage.utcnow(), "c": contact_id},
    )


def responses_frame(
    engine: Engine,
    wave_id: str,
    pillar_ids: list[str] | None = None,
    with_quarantined: bool = False,
    as_of: dt.datetime | None = None,
) -> pd.DataFrame:
    """The responses of a wave with their contact and account, one column per pillar answer;
    those set aside by the responses check only `with_quarantined`; `as_of` a time, the answers
    as they stood then (an answer changed later shows its earlier revision)."""
    import pandas as pd

    if as_of is not None:
        frame = storage.read_frame(engine, storage.query("responses_as_of"), wave_id=wave_id, cutoff=as_of)
    else:
        frame = storage.read_frame(
            engine, storage.query("responses"), wave_id=wave_id, with_quarantined=int(with_quarantined)
        )
    frame["score"] = frame["score"].astype("int64")
    pillars = pillar_frame(frame.pop("pillar_answers"), pillar_ids)
    return pd.concat([frame.reset_index(drop=True), pillars], axis=1)


def pillar_frame(answers: pd.Series, pillar_ids: list[str] | None = None) -> pd.DataFrame:
    """One nullable integer column `pillar_<id>` per pillar question from the responses' stored
    `pillar_answers` (JSON objects), parsed in one pass; `pillar_ids` None: every pillar answered."""
    import pandas as pd

    parsed = json.loads(f"[{','.join(answers.tolist())}]") if len(answers) else []
    ids = pillar_ids if pillar_ids is not None else sorted({k for a in parsed for k in a})
    return pd.DataFrame({f"pillar_{p}": pd.array([a.get(p) for a in parsed], dtype="Int64") for p in ids})


BAND_KINDS = {  # the ledger kind of each band's follow-up email
    "promoter": "followup_promoter",
    "passive": "followup_passive",
    "detractor": "followup_detractor",
    "critical": "followup_critical",
}


def band(score: int) -> str:
    """Score band of the follow-up emails: 9-10, 7-8, 2-6, 0-1."""
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    if score >= 2:
        return "detractor"
    return "critical"
