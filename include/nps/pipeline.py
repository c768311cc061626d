"""One function per step of the `nps_wave` DAG: glue between Airflow's tasks and the domain.

Each step reads what it needs from the NPS DB by wave id, does its work through the domain
modules, runs its data check, and returns a small JSON-able summary for the task's XCom.
Every step is safe to re-run.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from include.nps.core import business_days, charts, i18n, storage
from include.nps.core.connections import nps_engine, reports_dir
from include.nps.core.emails import Attachment
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport, TransientFailure
from include.nps.monitoring import alerts
from include.nps.realtime import new_responses
from include.nps.wave import (
    audience,
    data_checks,
    flash_content,
    mailings,
    responses,
    retrospective,
    routing,
    sales_decisions,
    sales_drops,
    stats,
    waves,
)

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
def plan_wave(params: dict[str, Any], run: tuple[str, str] | None = None) -> dict[str, Any]:
    """Plan the wave; for a run (`(dag_id, run_id)`), refuse times that run cannot keep from now."""
    wave = waves.WaveParams.from_params(params)
    milestones = waves.plan_wave(nps_engine(), wave, run, starts_at=storage.utcnow() if run else None)
    return {"wave_id": wave.wave_id, "milestones": milestones}


@fails_fast
def build_audience(wave_id: str) -> dict[str, Any]:
    """Load the contacts file (bad rows to the quarantine and a CSV of them), snapshot the
    audience and check it. A failing check discards the snapshot: nobody was emailed yet, and
    the re-run after the file is fixed takes a fresh one."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    rejected_csv = reports_dir(wave_id) / "quarantine" / "contacts-rejected.csv"
    loaded = audience.load_contacts(
        engine, wave_id, wave.audience_csv, wave.thresholds.max_rejected_share, rejected_csv
    )
    counts = audience.snapshot_audience(engine, wave_id, loaded.contact_ids, wave.frequency_days, wave.open_at)
    included = _included(engine, wave_id)
    previous_id = waves.previous_wave_id(engine, wave_id)
    previous_size = len(_included(engine, previous_id)) if previous_id else None
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
MASS_MAILINGS = {  # wave-wide email kind: the milestone it completes
    "preannouncement": "preannounce",
    "invitation": "open",
    "reminder": "reminder",
    "flash_results": "flash",
}


@fails_fast
def prepare_mailing(wave_id: str, kind: str) -> list[int]:
    """Put one of the wave-wide emails in the ledger; return its chunks (one mapped send each)."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    if kind == "invitation":
        waves.set_status(engine, wave_id, "open")
    if kind == "flash_results":
        _comment_reader()  # a broken themes file stops the flash results before any is queued
        _check_flash_figures(engine, flash_figures(engine, wave))
    recipients = _mailing_recipients(engine, wave_id, kind)
    return mailings.enqueue_contacts(engine, wave_id, kind, recipients, wave.chunk_size)


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


@retries_for_deliveries
def send_mailing_chunk(wave_id: str, kind: str, chunk: int) -> dict[str, int]:
    """Send the pending messages of one chunk over one SMTP session."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    contacts = storage.fetch_all(engine, storage.query("chunk_recipients"), wave_id=wave_id, kind=kind, chunk=chunk)
    extra = _flash_context(engine, wave) if kind == "flash_results" else None
    policy = outbox.DeliveryPolicy(wave.in_doubt, _delivery_window_end(engine, wave, kind), DEFERRED_WAIT_IN_TASK)
    with SmtpTransport() as transport:
        outcome = mailings.deliver_to_contacts(
            engine, wave, kind, contacts, transport, extra, chunk=chunk, policy=policy
        )
    return outcome.__dict__


def _delivery_window_end(engine: Any, wave: waves.WaveParams, kind: str) -> dt.datetime:
    """When a mailing stops retrying deferred messages: its window's length after its planned time,
    or after its ledger rows were prepared when that was later (a mailing run late gets its window)."""
    planned = waves.milestone_due(engine, wave.wave_id, MASS_MAILINGS[kind])
    row = storage.fetch_one(
        engine, "SELECT MIN(created_at) AS at FROM outbox WHERE wave_id = :w AND kind = :k", w=wave.wave_id, k=kind
    )
    prepared = (storage.as_utc(row["at"]) if row and row["at"] else None) or planned
    return max(planned, prepared) + dt.timedelta(hours=wave.delivery_window_hours)


@fails_fast
def check_mailing(wave_id: str, kind: str) -> dict[str, int]:
    """Every recipient has exactly one settled row: audience = sent + suppressed + failed. Then
    the alerts that never fail the wave: late milestones, and a low response after the reminder."""
    engine = nps_engine()
    _check_outbox(engine, wave_id, kind, len(_mailing_recipients(engine, wave_id, kind)))
    waves.mark_done(engine, wave_id, MASS_MAILINGS[kind])
    alerts.after_mailing_check(engine, wave_id, kind)  # late milestones; low response after the reminder
    return outbox.counts(engine, wave_id, kind).get(kind, {})


def _mailing_recipients(engine: Any, wave_id: str, kind: str) -> list[dict[str, Any]]:
    if kind == "reminder":
        return storage.fetch_all(engine, storage.query("reminder_recipients"), wave_id=wave_id)
    return storage.records(_included(engine, wave_id)[["contact_id", "email", "name", "locale"]])


@fails_fast
def share_drop(wave_id: str, phase: str) -> dict[str, Any]:
    """The raw-data drop: a complete file for sales ops and one per salesperson, with a manifest,
    written locally and to the drop location, and emailed (each recipient once)."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    cutoff = waves.milestone_due(engine, wave_id, "midwave") if phase == "midwave" else wave.close_at
    answers = responses.responses_frame(engine, wave_id, [p["id"] for p in wave.pillar_questions], as_of=cutoff)
    decided = _sales_decisions(engine, wave, answers) if phase == "postwave" else {}
    sheet = sales_drops.drop_frame(answers, wave.detractor_max, wave.pillar_questions, cutoff, decided)
    answered = responses.count_answered(engine, wave_id, cutoff)
    suite = data_checks.drop_suite(answered, list(sheet.columns))
    data_checks.run_check(engine, wave_id, f"drop_{phase}", "raw_data_drop", sheet, suite, row_key="Contact ID")
    silent = None
    if phase == "postwave":
        accounts = stats.per_account(engine, wave_id)
        silent = accounts[accounts["responses"] == 0]
    parts = sales_drops.drop_parts(sheet, silent)
    _check_seller_files(engine, wave_id, phase, parts)
    files = sales_drops.build_drop(wave_id, phase, parts, cutoff, wave.drop_formats)
    parcels = _drop_parcels(wave, files) if "email" in wave.drop_channels else {}
    sales_drops.check_recipients({address: parcel["why"] for address, parcel in parcels.items()}, wave.drop_allowed)
    links = _store_drop(wave, phase, cutoff, files)
    outcome = outbox.Outcome()
    if parcels:
        personal = _drop_mail(wave, parcels, links, silent)
        context = {"phase": phase}
        with SmtpTransport() as transport:
            outcome = mailings.send_internal(
                engine,
                wave,
                f"drop_{phase}",
                sorted(parcels),
                context,
                transport,
                template="sales_drop",
                personal=personal,
            )
    if phase == "midwave":
        waves.mark_done(engine, wave_id, "midwave")
    return {"files": len(files), "rows": len(sheet), "location": links.get("folder"), **outcome.__dict__}


def _check_seller_files(engine: Any, wave_id: str, phase: str, parts: sales_drops.Parts) -> None:
    """Each salesperson's file holds only the accounts they own, by the accounts table."""
    owners = storage.fetch_all(engine, storage.query("response_account_owners"), wave_id=wave_id)
    rows = sales_drops.seller_rows(parts)
    of_record = {o["contact_id"]: o["sales_owner"] for o in owners}
    rows["owner_of_record"] = rows["Contact ID"].map(lambda cell: of_record.get(sales_drops.unneutralise(cell)))
    suite = data_checks.seller_files_suite("owner_of_record")
    data_checks.run_check(engine, wave_id, f"drop_{phase}_files", "salesperson_files", rows, suite, "Contact ID")


def _drop_parcels(wave: waves.WaveParams, files: list[sales_drops.DropFile]) -> dict[str, dict[str, Any]]:
    """Who gets which files: sales ops the complete ones, each salesperson their own."""
    parcels: dict[str, dict[str, Any]] = {}
    for address in wave.sales_recipients:
        parcels[address] = {"why": "sales recipient", "files": [f for f in files if f.audience == sales_drops.COMPLETE]}
    for f in files:
        if f.audience != sales_drops.COMPLETE:
            parcel = parcels.setdefault(f.audience, {"why": "salesperson of the accounts", "files": []})
            parcel["files"].append(f)
    return parcels


def _store_drop(wave: waves.WaveParams, phase: str, cutoff: Any, files: list[sales_drops.DropFile]) -> dict[str, str]:
    """Write the files and their manifest to the local reports folder and, when configured, to the
    drop location (`ObjectStoragePath`); return the stored location of each file."""
    manifest = sales_drops.manifest(wave.wave_id, phase, cutoff, files)
    local = reports_dir(wave.wave_id) / phase
    local.mkdir(parents=True, exist_ok=True)
    for f in files:
        (local / f.name).write_bytes(f.content)
    (local / "manifest.json").write_bytes(manifest)
    links = {"folder": str(local)}
    if "storage" in wave.drop_channels:
        folder = _drop_root(wave) / phase
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / f.name).write_bytes(f.content)
            links[f.name] = str(folder / f.name)
        (folder / "manifest.json").write_bytes(manifest)
        links["folder"] = str(folder)
    return links


def _drop_root(wave: waves.WaveParams) -> Any:
    """The wave's folder in the drop location (`ObjectStoragePath`: a local folder, S3 or GCS)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(wave.drop_location, conn_id=wave.drop_storage_conn_id or None) / wave.wave_id


def _drop_mail(
    wave: waves.WaveParams, parcels: dict[str, dict[str, Any]], links: dict[str, str], silent: Any
) -> Callable[[str], tuple[dict[str, Any], list[Attachment]]]:
    """Each recipient's files: attached, or linked when above the mail size limit. Checked for
    every recipient before anything is sent."""
    limit = int(wave.mail_size_limit_mb * 1024 * 1024)
    for address, parcel in parcels.items():
        size = sum(len(f.content) for f in parcel["files"])
        parcel["attach"] = size <= limit
        if not parcel["attach"] and not all(f.name in links for f in parcel["files"]):
            raise sales_drops.DropRefused(
                f"raw-data drop stopped: the files for {address} weigh {size / 1048576:.1f} MB, above the "
                f"{wave.mail_size_limit_mb:g} MB mail limit, and no drop location is configured to link to. "
                "Nothing was sent."
            )

    def personal(address: str) -> tuple[dict[str, Any], list[Attachment]]:
        parcel = parcels[address]
        scope = "all" if parcel["why"] == "sales recipient" else "own"
        own_silent = silent if silent is None or scope == "all" else silent[silent["sales_owner"] == address]
        listed = [
            {"name": f.name, "rows": f.rows, "link": None if parcel["attach"] else links[f.name]}
            for f in parcel["files"]
        ]
        context = {
            "scope": scope,
            "files": listed,
            "responses": max((f.rows for f in parcel["files"]), default=0),
            "silent_accounts": [] if own_silent is None else own_silent["account_name"].tolist(),
        }
        attached = [Attachment(f.name, f.content) for f in parcel["files"]] if parcel["attach"] else []
        return context, attached

    return personal


def _sales_decisions(engine: Any, wave: waves.WaveParams, answers: Any) -> dict[str, str]:
    """The decisions sales returned so far, read from the wave's `returned/` folders."""
    return sales_decisions.collect(engine, wave.wave_id, _returned_files(wave), set(answers["contact_id"]))


def _returned_files(wave: waves.WaveParams) -> list[sales_decisions.ReturnedFile]:
    """Drop files sales sent back: in the drop location's `<wave>/returned/` (when drops are
    stored) and in the wave's local reports folder `returned/` (CS ops save emailed ones there)."""
    found = {
        path.name: sales_decisions.ReturnedFile(path.name, path.read_bytes())
        for path in (reports_dir(wave.wave_id) / "returned").glob("*")
        if path.suffix.lower() in sales_decisions.SUFFIXES
    }
    if "storage" in wave.drop_channels:
        folder = _drop_root(wave) / "returned"
        if folder.exists():
            for path in folder.iterdir():
                if path.suffix.lower() in sales_decisions.SUFFIXES:
                    found[path.name] = sales_decisions.ReturnedFile(path.name, path.read_bytes())
    return list(found.values())


def share_midwave_drop(wave_id: str) -> dict[str, Any]:
    return share_drop(wave_id, "midwave")


def share_postwave_drop(wave_id: str) -> dict[str, Any]:
    return share_drop(wave_id, "postwave")


@fails_fast
def close_wave(wave_id: str) -> dict[str, Any]:
    """Close the form and check every response; the few that break a rule (answered outside the
    window, not invited, out of scale) are set aside with their reason, too many stop the wave."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    waves.set_status(engine, wave_id, "closed")
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    frame = responses.responses_frame(engine, wave_id, pillar_ids, with_quarantined=True)
    frame["answered_at"] = _utc(frame["answered_at"])
    invited = [r["recipient"] for r in _ledger(engine, wave_id, "invitation") if r["status"] == "sent"]
    suite = data_checks.responses_suite(wave.pillar_questions, invited, (wave.open_at, wave.close_at), wave.thresholds)
    result = data_checks.run_check(
        engine, wave_id, "responses", "responses", frame, suite, "contact_id", wave.thresholds.max_rejected_share
    )
    responses.set_aside(engine, wave_id, result.rejected)
    waves.mark_done(engine, wave_id, "close")
    # The wave id too: the steps that must follow a successful close take it from here.
    return {"wave_id": wave_id, "responses": len(frame) - len(result.rejected), "set_aside": len(result.rejected)}


@fails_fast
def route_detractors(wave_id: str) -> dict[str, Any]:
    """One follow-up per detractor by the routing rules (`rules/routing.yaml`; a sales decision
    wins), then the chat alert of each, skipping those the real-time alerts already sent."""
    from include.nps.wave import routing_rules

    try:
        rules = routing_rules.load()  # checked before anyone is routed: a broken file fails at once
    except routing_rules.RulesError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    frame = wave_responses(engine, wave)
    fallback = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else "cs-ops"
    decided = _sales_decisions(engine, wave, frame)
    routed = routing.route_detractors(
        engine, wave_id, frame, wave.detractor_max, fallback, decided, rules=rules, country=wave.country
    )
    followups = routing.followups_frame(engine, wave_id)
    detractors = frame.loc[frame["score"] <= wave.detractor_max, "contact_id"].tolist()
    suite = data_checks.routing_suite(detractors, _changed_since_routed(engine, wave, detractors, followups))
    data_checks.run_check(engine, wave_id, "routing", "routing", followups, suite, row_key="contact_id")
    # What the real-time runs had no time for (answers of the last minutes, a paused DAG): Slack,
    # Teams, VIP and executive posts and CRM tasks, each once.
    late = new_responses.alert_new_responses(engine, wave_id, storage.utcnow())
    # Then every routed detractor to each configured detractor channel, in the real-time words.
    alerted = new_responses.alert_detractors(engine, wave_id)
    return {"detractors": routed, "realtime": late, "alerts": alerted}


def _changed_since_routed(engine: Any, wave: waves.WaveParams, detractors: list[str], followups: Any) -> list[str]:
    """Follow-ups opened in real time for a detractor's answer that has changed band since."""
    earlier = storage.fetch_all(
        engine, storage.query("ever_detractors"), wave_id=wave.wave_id, detractor_max=wave.detractor_max
    )
    return sorted({r["contact_id"] for r in earlier} & set(followups["contact_id"]) - set(detractors))


@fails_fast
def send_followups(wave_id: str) -> dict[str, Any]:
    """The score-band email to every respondent: 9-10, 7-8, 2-6, and 0-1 from an executive. One
    per respondent: one sent in real time stands, also when the answer changed band since."""
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    frame = wave_responses(engine, wave)
    frame["band"] = frame["score"].map(responses.band)
    earlier = {
        r["contact_id"]: r["kind"]
        for r in storage.fetch_all(
            engine, storage.query("band_emails"), wave_id=wave_id, kinds=list(responses.BAND_KINDS.values())
        )
    }
    sent: dict[str, Any] = {}
    with SmtpTransport() as transport:
        for band, kind in responses.BAND_KINDS.items():
            due = frame[(frame["band"] == band) & frame["contact_id"].map(lambda c, k=kind: earlier.get(c, k) == k)]
            contacts = _contacts(due)
            sender = wave.executive_sender if band == "critical" else None
            extra = _score_of(frame)
            sent[kind] = mailings.send_to_contacts(engine, wave, kind, contacts, transport, extra, sender).__dict__
            kept = {c for c, k in earlier.items() if k == kind} - set(due["contact_id"])  # an earlier answer's
            _check_outbox(engine, wave_id, kind, len(contacts) + len(kept))
    return sent


def _check_flash_figures(engine: Any, figures: dict[str, Any]) -> None:
    current = figures["current"]
    suite = data_checks.flash_suite(current["promoters"], current["detractors"], current["responses"])
    data_checks.run_check(engine, current["wave_id"], "flash_figures", "flash_results", _one_row(current), suite)


def _flash_context(engine: Any, wave: waves.WaveParams) -> Any:
    """Each contact's flash figures, with the chart drawn once per language."""
    figures = flash_figures(engine, wave)
    answers = wave_responses(engine, wave)
    respondents = set(answers["contact_id"])
    trend = [charts.WavePoint(name, nps) for name, nps in stats.nps_trend(engine, wave.wave_id)]
    split = {group: figures["current"][group] for group in ("promoters", "passives", "detractors")}

    @functools.cache
    def chart(locale: str) -> Attachment:
        png = charts.flash_chart(trend, split, locale)
        return Attachment("nps-chart.png", png, "image/png", content_id=charts.CONTENT_ID)

    we_did = flash_content.done_items(engine, waves.previous_wave_id(engine, wave.wave_id))
    quotes = _quotes(engine, wave, answers) if wave.share_quotes else {}
    focus = _focus_themes(answers, figures["current"]["detractors"])

    def context(contact: dict[str, Any]) -> dict[str, Any]:
        locale = i18n.normalize_locale(contact.get("locale"))
        return {
            **figures,
            "responded": contact["contact_id"] in respondents,
            "chart_cid": charts.CONTENT_ID,
            "inline_images": [chart(locale)],
            "we_did": [flash_content.note_in(item, locale) for item in we_did],
            "quotes": quotes.get(locale, []),
            "focus_themes": [theme.label_in(locale) for theme in focus],
        }

    return context


def _focus_themes(answers: Any, detractors: int) -> list[Any]:
    """The themes this wave's detractors complained about most: the flash's "what we will do next"."""
    themes, sorter = _comment_reader()
    parts = retrospective.classify_comments(answers, sorter)
    return flash_content.focus_themes(parts, themes, detractors)


def _quotes(engine: Any, wave: waves.WaveParams, answers: Any) -> dict[str, list[str]]:
    """Anonymised promoter quotes per language; no name of the wave's audience shows."""
    names = flash_content.names_in(audience.audience_frame(engine, wave.wave_id))
    return flash_content.quotes_by_locale(answers, names)


def flash_figures(engine: Any, wave: waves.WaveParams) -> dict[str, Any]:
    """This wave's NPS and pillars, the previous wave's, and the direction of each: 'up' or
    'down' only when the change is larger than chance (see `stats`)."""
    pillar_ids = [p["id"] for p in wave.pillar_questions]
    current = stats.wave_summary(engine, wave.wave_id, wave.pillar_questions)
    answers = responses.responses_frame(engine, wave.wave_id, pillar_ids)
    previous_id = waves.previous_wave_id(engine, wave.wave_id)
    previous = stats.wave_summary(engine, previous_id, wave.pillar_questions) if previous_id else None
    earlier = responses.responses_frame(engine, previous_id, pillar_ids) if previous_id else None
    prev_pillars = (previous or {}).get("pillars", {})

    def pillar_direction(pillar_id: str) -> str:
        column = f"pillar_{pillar_id}"
        return "new" if earlier is None else stats.mean_change(answers[column], earlier[column])

    return {
        "current": current,
        "previous": previous,
        "nps_direction": stats.nps_direction(current, previous),
        "pillar_rows": [
            {
                "text": p["text"],
                "translations": p.get("translations", {}),
                "scale": p["scale"],
                "score": current["pillars"].get(p["id"]),
                "interval": stats.mean_interval(answers[f"pillar_{p['id']}"]),
                "previous": prev_pillars.get(p["id"]),
                "direction": pillar_direction(p["id"]),
            }
            for p in wave.pillar_questions
        ],
    }


@fails_fast
def run_retrospective(wave_id: str) -> dict[str, Any]:
    """What customers said (every comment split into pros, cons and suggestions, each linked to a
    theme; themes ranked by the detractors raising them), how the survey itself went, and action
    items: stored, checked, opened as tracker issues when `nps_tracker` is set, then reported to
    CS ops by email and in `reports/<wave>/retrospective.html`. See `retrospective`,
    `comment_themes` and `issue_tracker`."""
    from include.nps.closed_loop import issue_tracker
    from include.nps.core import emails

    themes, sorter = _comment_reader()
    try:  # a broken tracker connection stops before anything
        target = issue_tracker.settings()
    except issue_tracker.TrackerSettingsError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    figures = flash_figures(engine, wave)
    accounts = stats.per_account(engine, wave_id)
    invited = stats.invited_contacts(engine, wave_id)
    collection = stats.collection_review(invited, business_days.country_timezone(wave.country))
    parts = retrospective.classify_comments(wave_responses(engine, wave), sorter)
    ranking = retrospective.rank_themes(parts, themes, figures["current"]["detractors"])
    owner = wave.cs_ops_recipients[0] if wave.cs_ops_recipients else wave.sender
    comments = retrospective.by_kind(parts)
    items = retrospective.action_items(
        figures["current"],
        figures["previous"],
        accounts,
        comments,
        wave.pillar_questions,
        owner,
        themes=themes,
        ranking=ranking,
        collection=collection,
        nps_direction=figures["nps_direction"],
    )
    retrospective.store_action_items(engine, wave_id, items, storage.utcnow(), wave.country)
    stored = retrospective.action_items_frame(engine, wave_id, items)
    suite = data_checks.retrospective_suite()
    data_checks.run_check(engine, wave_id, "retrospective", "retrospective", stored, suite, row_key="item_key")
    if target:  # a transient tracker failure fails the task here; its retry opens only what is left
        issue_tracker.open_issues(engine, target, mailings.wave_context(wave), storage.records(stored), parts)
        stored = retrospective.action_items_frame(engine, wave_id, items)
    chart = retrospective.themes_chart(ranking)
    context = {
        "figures": figures,
        "accounts": storage.records(accounts),
        "themes": ranking,
        "theme_names": {theme.id: theme.name for theme in themes.themes},
        "comments": comments,
        "items": storage.records(stored),
        "tracker": target.address if target else None,
        "segments": {segment: storage.records(stats.segment_rates(invited, segment)) for segment in stats.SEGMENTS},
        "coverage": stats.account_coverage(invited),
        "account_nps": stats.account_level_nps(invited),
        "collection": collection,
        "checks": storage.records(data_checks.results_frame(engine, wave_id)),
        "quarantined": audience.quarantined(engine, wave_id),
        "sent": outbox.counts(engine, wave_id),
    }
    file_context = {**context, "wave": mailings.wave_context(wave), "chart_src": retrospective.data_url(chart)}
    report = reports_dir(wave_id) / "retrospective.html"
    retrospective.write_report(report, emails.render("email/retrospective.html", file_context))
    images = [Attachment("themes.png", chart, "image/png", content_id=retrospective.CHART_CONTENT_ID)] if chart else []
    context["chart_src"] = f"cid:{retrospective.CHART_CONTENT_ID}" if chart else None
    with SmtpTransport() as transport:
        outcome = mailings.send_internal(
            engine, wave, "retrospective", wave.cs_ops_recipients, context, transport, inline_images=images
        )
    waves.set_status(engine, wave_id, "done")
    waves.mark_done(engine, wave_id, "retrospective")
    linked = int(stored["tracker_issue"].notna().sum())
    return {
        "action_items": len(stored),
        "themes": len(ranking),
        "tracker_issues": linked,
        "report": str(report),
        **outcome.__dict__,
    }


def _comment_reader() -> tuple[Any, Any]:
    """The program's themes and the comment classifier; a broken themes file or classifier
    setting fails the task at once (no retry) with every problem named."""
    from include.nps.wave import comment_themes

    try:
        themes = comment_themes.load_themes()
        return themes, comment_themes.classifier_from_setting(themes)
    except (comment_themes.ThemesError, comment_themes.ClassifierSettingError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def wave_responses(engine: Any, wave: waves.WaveParams) -> Any:
    return responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])


SEND_WINDOWS = {  # kind: the milestones it must be sent after and before (None: open-ended)
    "preannouncement": (None, "close_at"),
    "invitation": ("open_at", "close_at"),
    "reminder": ("open_at", "close_at"),
    "flash_results": ("close_at", None),
    # Band emails go out in real time (nps_responses) while the wave is open, and at close.
    **{kind: ("open_at", None) for kind in responses.BAND_KINDS.values()},
}


def _check_outbox(engine: Any, wave_id: str, kind: str, expected: int) -> None:
    import pandas as pd

    wave = waves.load_params(engine, wave_id)
    columns = ["recipient", "status", "sent_at", "delivered", "sent_to_suppressed"]
    frame = pd.DataFrame(_ledger(engine, wave_id, kind), columns=columns)
    frame["sent_at"] = _utc(frame["sent_at"])
    frame["delivered"] = frame["delivered"].astype("Int64")
    start, end = (getattr(wave, name) if name else None for name in SEND_WINDOWS.get(kind, (None, None)))
    suite = data_checks.outbox_suite(expected, (start, end), wave.thresholds.max_undelivered_share)
    data_checks.run_check(engine, wave_id, kind, "outbox", frame, suite, row_key="recipient")


def _ledger(engine: Any, wave_id: str, kind: str) -> list[dict[str, Any]]:
    return storage.fetch_all(engine, storage.query("ledger_check"), wave_id=wave_id, kind=kind)


def _utc(values: Any) -> Any:
    """Timestamps read from either database as timezone-aware UTC."""
    import pandas as pd

    return pd.to_datetime(values, utc=True, format="mixed")


def _included(engine: Any, wave_id: str) -> Any:
    frame = audience.audience_frame(engine, wave_id)
    return frame[frame["included"].astype(bool)].reset_index(drop=True)


def _contacts(frame: Any) -> list[dict[str, Any]]:
    """The respondents of `frame` as the band emails' recipients (a blank name or locale is None)."""
    return storage.records(frame.rename(columns={"contact_name": "name"})[["contact_id", "email", "name", "locale"]])


def _score_of(frame: Any) -> Any:
    scores = dict(zip(frame["contact_id"], frame["score"], strict=True))
    return lambda contact: {"score": int(scores[contact["contact_id"]])}


def _one_row(figures: dict[str, Any]) -> Any:
    import pandas as pd

    row = {k: v for k, v in figures.items() if k not in ("pillars", "wave_id", "interval")}
    row["count_gap"] = figures["responses"] - figures["promoters"] - figures["passives"] - figures["detractors"]
    return pd.DataFrame([row])
