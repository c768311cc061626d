"""The optional approval of the flash results before they go to every contact.

When a wave is started with `approve_flash_results`, a person approves or rejects the flash
results in Airflow (Required Actions) between the close and the flash-results time. The request
shows the figures (NPS, counts, pillars, the previous wave's) and a sample email as a contact who
did not answer reads it. Nobody answering by the flash-results time: the wave's
`flash_approval_on_timeout` (approve or reject) stands. The outcome is recorded with the wave's
check results (step `flash_approval`): a rejection is a decision, not a failure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from include.nps.core import emails, i18n, storage
from include.nps.wave import flash_results, mailings, waves

STEP = "flash_approval"
ON_TIMEOUT = ("approve", "reject")
SAMPLE_ID, SAMPLE_EMAIL = "sample", "sample.reader@example.invalid"
# A made-up reader: no customer's name or address goes into Airflow's metadata DB.
SAMPLE_READER: dict[str, Any] = {
    "contact_id": SAMPLE_ID,
    "name": "Sample Reader",
    "email": SAMPLE_EMAIL,
    "locale": i18n.DEFAULT_LOCALE,
    "responded": False,
}


def request(engine: Engine, wave: waves.WaveParams, send_at: dt.datetime, on_timeout: str) -> dict[str, str]:
    """The approval request's subject and Markdown body: the figures and a rendered sample email."""
    shown = flash_results.figures(engine, wave)
    sample = sample_email(wave, shown)
    context = {
        **shown,
        "wave_name": wave.wave_name,
        "send_at": f"{send_at:%Y-%m-%d %H:%M}",
        "recipients": mailings.count_recipients(engine, wave.wave_id, "flash_results"),
        "direction": shown["nps_direction"],
        "previous_wave": (shown["previous"] or {}).get("wave_id"),
        "sample_subject": sample.subject,
        "sample_text": sample.text.replace("```", "'''").strip(),
        "on_timeout": on_timeout,
    }
    return {
        "subject": " ".join(emails.render("hitl/flash_approval.subject.txt", context).split()),
        "body": emails.render("hitl/flash_approval.md", context),
    }


def sample_email(wave: waves.WaveParams, shown: dict[str, Any]) -> emails.RenderedEmail:
    """The flash-results email (subject and text) as a made-up contact who did not answer reads it."""
    contact = mailings.reader(SAMPLE_READER, wave)
    links = mailings.survey_links(wave, SAMPLE_ID)
    context = {"wave": mailings.wave_context(wave), "contact": contact, **links, **shown, "responded": False}
    return emails.render_email("flash_results", contact["locale"], SAMPLE_EMAIL, context)


def record(engine: Engine, wave_id: str, approved: bool, answered_by: str | None) -> str:
    """Keep the outcome with the wave's check results; return its summary."""
    who = f"by {answered_by}" if answered_by else "by nobody: the timeout policy"
    summary = f"flash results {'approved' if approved else 'rejected'} {who}"
    if not approved:
        summary += "; not sent"
    row = {
        "wave_id": wave_id,
        "step": STEP,
        "suite": STEP,
        "success": True,
        "evaluated": 1,
        "failed": 0,
        "warnings": 0 if approved else 1,
        "duration_ms": 0,
        "summary": summary,
        "details": storage.dumps([{"approved": approved, "answered_by": answered_by}]),
        "now": storage.utcnow(),
    }
    storage.execute(engine, storage.query("upsert_check_result"), row)
    return summary
