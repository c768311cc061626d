"""Closing a wave: the survey form stops taking answers and every response is checked; the few
that break a rule (answered outside the window, not invited, out of scale) are set aside with their
reason, too many stop the wave (`DataCheckFailed`).

The responses are read once, with whether each respondent was invited (an anti-join against the
invitations sent, in the database), and only the responses whose verdict changed are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from include.nps.core import storage
from include.nps.wave import bulk_reads, data_checks, responses, waves

if TYPE_CHECKING:
    import pandas as pd

REASON_CHARS = 1000


def close(engine: Engine, wave: waves.WaveParams) -> dict[str, Any]:
    """Close the form, check the responses, set aside the rejected ones; a re-run checks again."""
    waves.set_status(engine, wave.wave_id, "closed")
    frame = checked_frame(engine, wave)
    window = (wave.open_at, wave.close_at)
    suite = data_checks.responses_suite(wave.pillar_questions, None, window, wave.thresholds, counted_lengths=True)
    result = data_checks.run_check(
        engine, wave.wave_id, "responses", "responses", frame, suite, "contact_id", wave.thresholds.max_rejected_share
    )
    set_aside(engine, wave.wave_id, frame, result.rejected)
    waves.mark_done(engine, wave.wave_id, "close")
    return {"responses": len(frame) - len(result.rejected), "set_aside": len(result.rejected)}


def checked_frame(engine: Engine, wave: waves.WaveParams) -> pd.DataFrame:
    """Every response of the wave as the responses check reads it (those set aside before too), in
    the order they were given: contact, score, the comment's length, answer time, `invited`, a
    column per pillar, and the reason it is set aside now (`quarantine_reason`)."""
    import pandas as pd

    frame = bulk_reads.frame(engine, storage.query("responses_check"), wave_id=wave.wave_id)
    try:  # as the NPS DB writes times; any other way of writing them is read too, slower
        frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="ISO8601")
    except (ValueError, TypeError):
        frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="mixed")
    frame = frame.sort_values(["answered_at", "contact_id"], kind="stable", ignore_index=True)
    frame["invited"] = frame["invited"].astype(bool)
    frame["score"] = frame["score"].astype("int64")
    pillars = responses.pillar_frame(frame.pop("pillar_answers"), [p["id"] for p in wave.pillar_questions])
    return pd.concat([frame, pillars], axis=1)


def set_aside(engine: Engine, wave_id: str, frame: pd.DataFrame, rejected: dict[str, list[str]]) -> int:
    """Leave exactly the check's verdict on the responses of `frame`: the rejected ones marked with
    why, the others not; only the responses whose mark changes are written, in one transaction.
    Returns how many were written."""
    reasons = {contact_id: "; ".join(why)[:REASON_CHARS] for contact_id, why in rejected.items()}
    verdict = frame["contact_id"].map(reasons).astype(object)
    changed = verdict.fillna("\x00") != frame["quarantine_reason"].astype(object).fillna("\x00")
    marks = verdict[changed].astype(object).where(verdict[changed].notna(), None)
    changes = [
        {"wave_id": wave_id, "contact_id": contact_id, "reason": reason}
        for contact_id, reason in zip(frame.loc[changed, "contact_id"], marks, strict=True)
    ]
    if changes:
        with engine.begin() as conn:
            conn.execute(text(storage.query("mark_response_set_aside")), changes)
    return len(changes)
