"""Closing a wave: the survey form stops taking answers and every response is checked; the few
that break a rule (answered outside the window, not invited, out of scale) are set aside with their
reason, too many stop the wave (`DataCheckFailed`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.wave import data_checks, responses, waves


def close(engine: Engine, wave: waves.WaveParams) -> dict[str, Any]:
    """Close the form, check the responses, set aside the rejected ones; a re-run checks again."""
    import pandas as pd

    waves.set_status(engine, wave.wave_id, "closed")
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    frame = responses.responses_frame(engine, wave.wave_id, pillar_ids, with_quarantined=True)
    frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True, format="mixed")
    ledger = storage.fetch_all(engine, storage.query("ledger_check"), wave_id=wave.wave_id, kind="invitation")
    invited = [r["recipient"] for r in ledger if r["status"] == "sent"]
    suite = data_checks.responses_suite(wave.pillar_questions, invited, (wave.open_at, wave.close_at), wave.thresholds)
    result = data_checks.run_check(
        engine, wave.wave_id, "responses", "responses", frame, suite, "contact_id", wave.thresholds.max_rejected_share
    )
    responses.set_aside(engine, wave.wave_id, result.rejected)
    waves.mark_done(engine, wave.wave_id, "close")
    return {"responses": len(frame) - len(result.rejected), "set_aside": len(result.rejected)}
