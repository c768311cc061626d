"""One function per step of the `nps_wave` DAG: glue between Airflow's tasks and the domain.

Each step reads what it needs from the NPS DB by wave id, does its work through the domain
modules, runs its data check, and returns a small JSON-able summary for the task's XCom.
Every step is safe to re-run.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from include.nps.core import business_days, storage
from include.nps.core.connections import nps_engine, reports_dir
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport, TransientFailure
from include.nps.monitoring import alerts
from include.nps.privacy import audit
from include.nps.realtime import new_responses
from include.nps.wave import (
    audience,
    band_emails,
    closing,
    data_checks,
    drop_sharing,
    flash_results,
    mailings,
    responses,
    retrospective_report,
    routing,
    sales_drops,
    waves,
)

if TYPE_CHECKING:
    from include.nps.wave.comment_themes import CommentClassifier, Themes

F = TypeVar("F", bound=Callable[..., Any])


def fails_fast(step: F) -> F:
    """A failed data check, an unusable audience file, a refused drop or a wave that cannot be
    planned fails the task at once: retrying cannot fix them."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except (
            data_checks.DataCheckFailed,
            sales_drops.DropRefused,
            audience.AudienceError,
            waves.WaveError,
            business_days.CalendarError,
        ) as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@fails_fast
def plan_wave(params: dict[str, Any], run: tuple[str, str] | None = None, actor: str | None = None) -> dict[str, Any]:
    """Plan the wave; for a run (`(dag_id, run_id)`), refuse times that run cannot keep from now.
    Who triggered it (`actor`) goes to the audit trail, once per run."""
    wave = waves.WaveParams.from_params(params)
    engine = nps_engine()
    milestones = waves.plan_wave(engine, wave, run, starts_at=storage.utcnow() if run else None)
    run_id = run[1] if run else None
    event_id = f"wave_triggered:{run[0]}:{run[1]}" if run else None
    audit.record(engine, actor, "wave_triggered", run_id, wave.wave_id, {"program": wave.program}, event_id)
    return {"wave_id": wave.wave_id, "milestones": milestones}


@fails_fast
def build_audience(wave_id: str) -> dict[str, Any]:
    """Load the contacts file (bad rows to the quarantine and a CSV of them), snapshot the
    audience and check it. A failing check discards the snapshot: nobody was emailed yet, and
    the re-run after the file is fixed takes a fresh one."""
    engine, wave = _wave(wave_id)
    rejected_csv = reports_dir(wave_id) / "quarantine" / "contacts-rejected.csv"
    loaded = audience.load_contacts(
        engine, wave_id, wave.audience_csv, wave.thresholds.max_rejected_share, rejected_csv
    )
    counts = audience.snapshot_audience(engine, wave_id, loaded.contact_ids, wave.frequency_days, wave.open_at)
    included = audience.included_frame(engine, wave_id)
    previous_id = waves.previous_wave_id(engine, wave_id)
    previous_size = len(audience.included_frame(engine, previous_id)) if previous_id else None
    suite = data_checks.audience_suite(len(included), previous_size, wave.thresholds)
    frame = included.assign(owner=included["sales_owner"].fillna(included["csm"]))
    try:
        data_checks.run_check(engine, wave_id, "audience", "audience", frame, suite, row_key="contact_id")
    except data_checks.DataCheckFailed:
        audience.discard_snapshot(engine, wave_id)
        raise
    rejected = {"rejected_rows_csv": str(rejected_csv)} if loaded.problems else {}
    return {"loaded": loaded.loaded, "quarantined": loaded.quarantined, **counts, **rejected}


OTHER_ERROR_TRIES = 3  # a send task's tries for any other error: those of every task (2 retries)
# A deferred message due again within this is waited for inside the send task (greylisting asks
# for a few minutes); one due later is left to the task's retry, which frees the worker meanwhile.
DEFERRED_WAIT_IN_TASK = dt.timedelta(minutes=5)


@fails_fast
def prepare_mailing(wave_id: str, kind: str) -> list[int]:
    """Put one of the wave-wide emails in the ledger; return its chunks (one mapped send each)."""
    engine, wave = _wave(wave_id)
    if kind == "invitation":
        waves.set_status(engine, wave_id, "open")
    if kind == "flash_results":
        _comment_reader()  # a broken themes file stops the flash results before any is queued
        flash_results.check_figures(engine, wave)
    return mailings.enqueue_mailing(engine, wave_id, kind, wave.chunk_size)


def retries_for_deliveries(step: F) -> F:
    """The send task has many retries (dags/nps_wave.py) so that deferred messages are tried again
    within the delivery window, and an unreachable mail server or database is waited out; any other
    error (a template or data bug) fails the task after the tries every other task gets, instead of
    hiding behind hours of retries."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except (outbox.DeliveryIncomplete, TransientFailure, OperationalError):
            raise
        except Exception as exc:
            if int(os.environ.get("AIRFLOW_CTX_TRY_NUMBER") or 1) >= OTHER_ERROR_TRIES:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(f"{exc} (not a delivery to retry later: no more tries)") from exc
            raise

    return wrapper  # type: ignore[return-value]


MAX_SEND_TASKS = 256  # mapped send tasks of one mailing at most; each takes a range of its chunks


def send_batches(chunks: list[int], budget: int | None = None) -> list[list[int]]:
    """The mailing's chunks in at most `budget` mapped send tasks (by default `MAX_SEND_TASKS`, never
    more than Airflow's `[core] max_map_length`): consecutive chunks, as evenly spread as can be."""
    budget = max(1, budget or _send_task_budget())
    tasks = min(budget, len(chunks))
    size, extra = divmod(len(chunks), tasks) if tasks else (0, 0)
    batches, start = [], 0
    for index in range(tasks):
        end = start + size + (index < extra)
        batches.append(chunks[start:end])
        start = end
    return batches


def _send_task_budget() -> int:
    from airflow.sdk.configuration import conf

    return min(MAX_SEND_TASKS, conf.getint("core", "max_map_length", fallback=1024))


@retries_for_deliveries
def send_mailing_chunks(wave_id: str, kind: str, chunks: list[int]) -> dict[str, int]:
    """Send the pending messages of `chunks` (one mapped send task's) over one SMTP session. A first
    pass sends every chunk without waiting; a second gives the chunks with deferred messages the
    in-task wait, so the task waits once, not once per chunk. Still deferred: the task's retry."""
    engine, wave = _wave(wave_id)
    extra = _reader_context(engine, wave, kind)
    totals: Counter[str] = Counter()
    with SmtpTransport() as transport:
        deferred = _send_chunks(engine, wave, kind, chunks, transport, extra, totals, dt.timedelta(0))
        still = _send_chunks(engine, wave, kind, deferred, transport, extra, totals, DEFERRED_WAIT_IN_TASK)
    if still:
        raise outbox.DeliveryIncomplete(f"chunks {', '.join(map(str, still))} have messages deferred for later")
    return dict(totals)


def _send_chunks(
    engine: Engine,
    wave: waves.WaveParams,
    kind: str,
    chunks: list[int],
    transport: SmtpTransport,
    extra: Any,
    totals: Counter[str],
    wait: dt.timedelta,
) -> list[int]:
    """Send each chunk, adding its outcome to `totals`; return the chunks left with deferred messages."""
    deferred = []
    for chunk in chunks:
        try:
            totals.update(_send_chunk(engine, wave, kind, chunk, transport, extra, wait))
        except outbox.DeliveryIncomplete:
            deferred.append(chunk)
    return deferred


@retries_for_deliveries
def send_mailing_chunk(wave_id: str, kind: str, chunk: int) -> dict[str, int]:
    """Send the pending messages of one chunk over one SMTP session."""
    engine, wave = _wave(wave_id)
    with SmtpTransport() as transport:
        extra = _reader_context(engine, wave, kind)
        return _send_chunk(engine, wave, kind, chunk, transport, extra, DEFERRED_WAIT_IN_TASK)


def _send_chunk(
    engine: Engine,
    wave: waves.WaveParams,
    kind: str,
    chunk: int,
    transport: SmtpTransport,
    extra: Any,
    wait: dt.timedelta,
) -> dict[str, int]:
    contacts = storage.fetch_all(
        engine, storage.query("chunk_recipients"), wave_id=wave.wave_id, kind=kind, chunk=chunk
    )
    window_end = mailings.delivery_window_end(engine, wave, kind)
    policy = outbox.DeliveryPolicy(wave.in_doubt, window_end, wait)
    outcome = mailings.deliver_to_contacts(engine, wave, kind, contacts, transport, extra, chunk=chunk, policy=policy)
    return outcome.__dict__


def _reader_context(engine: Engine, wave: waves.WaveParams, kind: str) -> Any:
    """What each reader's email adds to the contact (the flash results' figures); built once per task."""
    return flash_results.reader_context(engine, wave, *_comment_reader()) if kind == "flash_results" else None


@fails_fast
def check_mailing(wave_id: str, kind: str) -> dict[str, int]:
    """Every recipient has exactly one settled row: audience = sent + suppressed + failed. Then
    the alerts that never fail the wave: late milestones, and a low response after the reminder."""
    engine = nps_engine()
    mailings.check_outbox(engine, wave_id, kind, mailings.count_recipients(engine, wave_id, kind))
    waves.mark_done(engine, wave_id, mailings.MASS_MAILINGS[kind])
    alerts.after_mailing_check(engine, wave_id, kind)  # late milestones; low response after the reminder
    return outbox.counts(engine, wave_id, kind).get(kind, {})


@fails_fast
def share_drop(wave_id: str, phase: str) -> dict[str, Any]:
    """The raw-data drop of `phase` (midwave or postwave): see `drop_sharing.share`; audited once."""
    engine, wave = _wave(wave_id)
    done = drop_sharing.share(engine, wave, phase)
    counts = {key: done.get(key) for key in ("files", "rows", "sent")}
    audit.record(engine, None, "drop_sent", f"drop_{phase}", wave_id, counts, f"drop_{phase}:{wave_id}")
    return done


def share_midwave_drop(wave_id: str) -> dict[str, Any]:
    return share_drop(wave_id, "midwave")


def share_postwave_drop(wave_id: str) -> dict[str, Any]:
    return share_drop(wave_id, "postwave")


@fails_fast
def close_wave(wave_id: str) -> dict[str, Any]:
    """Close the form and check every response (see `closing.close`)."""
    # The wave id too: the steps that must follow a successful close take it from here.
    return {"wave_id": wave_id, **closing.close(*_wave(wave_id))}


def _routing_rules() -> Any:
    """The routing rules, checked before anyone is routed: a broken file fails the task at once."""
    from include.nps.wave import routing_rules

    try:
        return routing_rules.load()
    except routing_rules.RulesError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def _route(engine: Engine, wave: waves.WaveParams, rules: Any) -> int:
    """Route the wave's detractors with every sales decision so far: those answered in Airflow
    and those read now from the returned drop files (`sales_decisions` says which wins)."""
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    decided = drop_sharing.returned_decisions(engine, wave, frame)
    routed = routing.route_wave(engine, wave, frame, decided, rules)
    if decided:
        counts = dict(Counter(decided.values()))
        event_id = f"decisions:{wave.wave_id}"
        audit.record(engine, None, "decisions_applied", "sales_decisions", wave.wave_id, counts, event_id)
    return routed


@fails_fast
def route_detractors(wave_id: str) -> dict[str, Any]:
    """One follow-up per detractor by the routing rules (`rules/routing.yaml`; a sales decision
    wins), then the chat alert of each, skipping those the real-time alerts already sent."""
    rules = _routing_rules()
    engine, wave = _wave(wave_id)
    routed = _route(engine, wave, rules)
    # What the real-time runs had no time for (answers of the last minutes, a paused DAG): Slack,
    # Teams, VIP and executive posts and CRM tasks, each once.
    late = new_responses.alert_new_responses(engine, wave_id, storage.utcnow())
    # Then every routed detractor to each configured detractor channel, in the real-time words.
    alerted = new_responses.alert_detractors(engine, wave_id)
    return {"detractors": routed, "realtime": late, "alerts": alerted}


def export_contact_results(wave_id: str) -> dict[str, Any]:
    """The wave's per-contact results for BI, churn signal included (see `contact_results`)."""
    from include.nps.wave import contact_results

    return contact_results.export(*_wave(wave_id))


@fails_fast
def sales_decision_requests(wave_id: str) -> list[dict[str, Any]]:
    """The human-in-the-loop requests of the detractors whose follow-up owner a person decides in
    Airflow (`decide_in_airflow` of the routing rules), due by the flash-results time."""
    from include.nps.wave import decision_requests

    rules = _routing_rules()
    engine, wave = _wave(wave_id)
    frame = responses.responses_frame(engine, wave_id, [p["id"] for p in wave.pillar_questions])
    deadline = waves.milestone_due(engine, wave_id, "flash")
    return decision_requests.requests(engine, wave, frame, rules, deadline)


@fails_fast
def apply_sales_decision(wave_id: str, contact_id: str, decision: str, answered_by: str | None) -> dict[str, Any]:
    """Store a decision taken in Airflow (`answered_by` None: the default that stood at the
    deadline), then route the wave's detractors exactly as with a returned drop file's decisions."""
    from include.nps.wave import sales_decisions

    rules = _routing_rules()
    engine, wave = _wave(wave_id)
    sales_decisions.record_answer(engine, wave_id, contact_id, decision, answered_by)
    _route(engine, wave, rules)
    actor = answered_by or f"{audit.SYSTEM} (the default at the deadline)"
    audit.record(engine, actor, "decisions_applied", "required_actions", wave_id, {decision: 1})
    owner = storage.fetch_one(
        engine,
        "SELECT owner_type, owner, owner_source FROM followups WHERE wave_id = :w AND contact_id = :c",
        w=wave_id,
        c=contact_id,
    )
    return {"contact_id": contact_id, "decision": decision, "answered_by": answered_by, **(owner or {})}


def kept_sales_decision(wave_id: str, contact_id: str) -> tuple[str, str] | None:
    """(decision, user) a person already gave in Airflow for this contact (see `person_answer`)."""
    from include.nps.wave import sales_decisions

    return sales_decisions.person_answer(nps_engine(), wave_id, contact_id)


@fails_fast
def flash_approval_request(wave_id: str, on_timeout: str) -> dict[str, Any]:
    """The flash-results approval's subject and body, and its deadline: the flash-results time."""
    from include.nps.wave import flash_approval

    engine, wave = _wave(wave_id)
    send_at = waves.milestone_due(engine, wave_id, "flash")
    return {**flash_approval.request(engine, wave, send_at, on_timeout), "decide_by": send_at.isoformat()}


def record_flash_approval(wave_id: str, approved: bool, answered_by: str | None) -> str:
    """Keep the approval's outcome with the wave (a rejection sends nothing, and fails nothing)."""
    from include.nps.wave import flash_approval

    return flash_approval.record(nps_engine(), wave_id, approved, answered_by)


@fails_fast
def send_followups(wave_id: str) -> dict[str, Any]:
    """The score-band email to every respondent (see `band_emails.send_at_close`)."""
    engine, wave = _wave(wave_id)
    with SmtpTransport() as transport:
        return band_emails.send_at_close(engine, wave, transport)


@fails_fast
def run_retrospective(wave_id: str) -> dict[str, Any]:
    """What customers said (every comment split into pros, cons and suggestions, each linked to a
    theme; themes ranked by the detractors raising them), how the survey itself went, and action
    items: stored, checked, opened as tracker issues when `nps_tracker` is set, then reported to
    CS ops by email and in `reports/<wave>/retrospective.html`. See `retrospective_report`,
    `comment_themes` and `issue_tracker`."""
    from include.nps.closed_loop import issue_tracker

    themes, sorter = _comment_reader()
    try:  # a broken tracker connection stops before anything
        target = issue_tracker.settings()
    except issue_tracker.TrackerSettingsError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
    engine, wave = _wave(wave_id)
    found = retrospective_report.review(engine, wave, themes, sorter)
    if target:  # a transient tracker failure fails the task here; its retry opens only what is left
        items = storage.records(found.stored)
        issue_tracker.open_issues(engine, target, mailings.wave_context(wave), items, found.parts)
        found = found.reread(engine, wave_id)
    return retrospective_report.publish(engine, wave, found, themes, target.address if target else None)


def _wave(wave_id: str) -> tuple[Engine, waves.WaveParams]:
    engine = nps_engine()
    return engine, waves.load_params(engine, wave_id)


def _comment_reader() -> tuple[Themes, CommentClassifier]:
    """The program's themes and the comment classifier; a broken themes file or classifier
    setting fails the task at once (no retry) with every problem named."""
    from include.nps.wave import comment_themes

    try:
        themes = comment_themes.load_themes()
        return themes, comment_themes.classifier_from_setting(themes)
    except (comment_themes.ThemesError, comment_themes.ClassifierSettingError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
