"""A wave: its parameters (from the trigger form), its stored plan and its status."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Engine

from include.nps.core import addresses, business_days, storage

OVERRIDABLE = ("preannounce", "reminder", "midwave", "flash", "retrospective")
STATUSES = ("planned", "open", "closed", "done")
# A mailing's send tasks retry (with Airflow's exponential backoff up to 30 minutes) for about six
# hours: a longer delivery window would outlive them.
MAX_DELIVERY_WINDOW_HOURS = 6


class WaveError(ValueError):
    """The wave's parameters cannot make a wave."""


@dataclass(frozen=True)
class CheckThresholds:
    """How much bad data a wave tolerates before its data checks stop it."""

    max_rejected_share: float = 0.05  # of input rows (contacts, responses) set aside
    audience_min_ratio: float = 0.5  # of the previous wave's audience size
    audience_max_ratio: float = 2.0
    max_comment_chars: int = 5000  # longer comments are a warning
    max_undelivered_share: float = 0.05  # of a mailing's messages not suppressed: failed or in doubt

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CheckThresholds:
        defaults = cls()
        thresholds = cls(
            max_rejected_share=float(given(params, "max_rejected_share", defaults.max_rejected_share)),
            audience_min_ratio=float(given(params, "audience_min_ratio", defaults.audience_min_ratio)),
            audience_max_ratio=float(given(params, "audience_max_ratio", defaults.audience_max_ratio)),
            max_comment_chars=int(given(params, "max_comment_chars", defaults.max_comment_chars)),
            max_undelivered_share=float(given(params, "max_undelivered_share", defaults.max_undelivered_share)),
        )
        if not 0 <= thresholds.max_rejected_share <= 1:
            raise WaveError(f"max_rejected_share must be between 0 and 1, got {thresholds.max_rejected_share}")
        if not 0 <= thresholds.audience_min_ratio <= 1 <= thresholds.audience_max_ratio:
            raise WaveError("audience_min_ratio must be at most 1 and audience_max_ratio at least 1")
        if not 0 <= thresholds.max_undelivered_share <= 1:
            raise WaveError(f"max_undelivered_share must be between 0 and 1, got {thresholds.max_undelivered_share}")
        if thresholds.max_comment_chars < 1:
            raise WaveError(f"max_comment_chars must be positive, got {thresholds.max_comment_chars}")
        return thresholds


@dataclass(frozen=True)
class WaveParams:
    wave_name: str
    program: str
    product: str
    country: str
    audience_csv: str
    open_at: dt.datetime
    close_at: dt.datetime
    pillar_questions: list[dict[str, Any]]
    sales_recipients: list[str]
    cs_ops_recipients: list[str]
    sender: str
    executive_sender: str
    detractor_max: int = 6
    frequency_days: int = 90
    share_quotes: bool = False
    chunk_size: int = 500
    drop_channels: list[str] = field(default_factory=lambda: ["email"])
    drop_formats: list[str] = field(default_factory=lambda: ["xlsx"])
    drop_location: str = ""
    drop_storage_conn_id: str = ""
    drop_allow_list: list[str] = field(default_factory=list)
    mail_size_limit_mb: float = 10.0
    delivery_window_hours: float = 4.0
    in_doubt: str = "resend"
    thresholds: CheckThresholds = field(default_factory=CheckThresholds)
    # Retention of the program's personal data, in days (None keeps it): see include/nps/privacy/retention.py
    retention_comment_days: int | None = None
    retention_response_days: int | None = None
    retention_quarantine_days: int | None = None
    overrides: dict[str, dt.datetime | None] = field(default_factory=dict)

    @property
    def drop_allowed(self) -> list[str]:
        """Who may receive raw data: the listed addresses and whole domains, else the sender's domain."""
        return self.drop_allow_list or [parseaddr(self.sender)[1].rpartition("@")[2].lower()]

    @property
    def wave_id(self) -> str:
        return f"{slug(self.program)}-{slug(self.wave_name)}"

    @classmethod
    def from_params(cls, params: dict[str, Any], planning: bool = True) -> WaveParams:
        """Parse the DAG run's Params (strings from the trigger form) into a checked WaveParams; an
        optional field may be None (an empty form field). Recipients, senders and the drop allow-list
        are parsed strictly (`include.nps.core.addresses`): a WaveError names the field and the item.

        `planning=False` reads a stored wave: its times and drop recipients were checked when it was
        planned, by the rules of that day, and are not judged again (the drop checks each recipient
        at send)."""
        try:
            stored = params.get("overrides") or {}  # a stored wave keeps them under this key
            overrides = {name: parse_time(params.get(f"{name}_at") or stored.get(name)) for name in OVERRIDABLE}
            wave = cls(
                wave_name=params["wave_name"].strip(),
                program=params["program"].strip(),
                product=params["product"].strip(),
                country=params["country"].strip().upper(),
                audience_csv=params["audience_csv"].strip(),
                open_at=required_time(params, "open_at"),
                close_at=required_time(params, "close_at"),
                pillar_questions=list(params.get("pillar_questions") or []),
                sales_recipients=parse_items(params, "sales_recipients", addresses.bare_address),
                cs_ops_recipients=parse_items(params, "cs_ops_recipients", addresses.bare_address),
                sender=parse_sender(params, "sender"),
                executive_sender=parse_sender(params, "executive_sender"),
                detractor_max=int(given(params, "detractor_max", 6)),
                frequency_days=int(given(params, "frequency_days", 90)),
                share_quotes=params.get("share_quotes") in (True, "true", "True", 1),
                chunk_size=int(given(params, "chunk_size", 500)),
                drop_channels=list(params.get("drop_channels") or ["email"]),
                drop_formats=list(params.get("drop_formats") or ["xlsx"]),
                drop_location=(params.get("drop_location") or "").strip().rstrip("/"),
                drop_storage_conn_id=(params.get("drop_storage_conn_id") or "").strip(),
                drop_allow_list=parse_items(params, "drop_allow_list", addresses.allow_entry),
                mail_size_limit_mb=float(given(params, "mail_size_limit_mb", 10)),
                delivery_window_hours=float(given(params, "delivery_window_hours", 4)),
                in_doubt=str(given(params, "in_doubt", "resend")),
                thresholds=CheckThresholds.from_params(params.get("thresholds") or params),
                retention_comment_days=optional_days(params, "retention_comment_days"),
                retention_response_days=optional_days(params, "retention_response_days"),
                retention_quarantine_days=optional_days(params, "retention_quarantine_days"),
                overrides=overrides,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WaveError(f"invalid wave parameters: {exc}") from exc
        wave.check()
        if planning:
            wave.milestones()
            wave.check_drop_recipients()
        return wave

    def check(self) -> None:
        if not self.wave_name or not slug(self.wave_name):
            raise WaveError("wave_name is empty")
        if self.chunk_size < 1:
            raise WaveError(f"chunk_size must be at least 1, got {self.chunk_size}")
        if not 0 <= self.detractor_max <= 6:
            raise WaveError(f"detractor_max must be between 0 and 6, got {self.detractor_max}")
        ids = [p.get("id") for p in self.pillar_questions]
        for index, pillar in enumerate(self.pillar_questions):
            if not pillar.get("id") or not pillar.get("text") or pillar.get("scale") not in ("0-10", "1-5"):
                raise WaveError(f"pillar_questions[{index}] needs an id, a text and a scale of '0-10' or '1-5'")
        if len(set(ids)) != len(ids):
            raise WaveError("pillar question ids must be unique")
        if not 0 < self.delivery_window_hours <= MAX_DELIVERY_WINDOW_HOURS:
            raise WaveError(
                f"delivery_window_hours must be above 0 and at most {MAX_DELIVERY_WINDOW_HOURS}, "
                f"got {self.delivery_window_hours}"
            )
        if self.in_doubt not in ("resend", "hold"):
            raise WaveError(f"in_doubt must be 'resend' or 'hold', got {self.in_doubt!r}")
        if unknown := set(self.drop_channels) - {"email", "storage"}:
            raise WaveError(f"drop_channels: unknown channel(s) {sorted(unknown)}; use email and/or storage")
        if unknown := set(self.drop_formats) - {"xlsx", "csv"}:
            raise WaveError(f"drop_formats: unknown format(s) {sorted(unknown)}; use xlsx and/or csv")
        if "storage" in self.drop_channels and not self.drop_location:
            raise WaveError("drop_location is required when drops are delivered to storage")

    def milestones(self) -> dict[str, dt.datetime]:
        """The wave's milestones in its country's business days; a CalendarError says why its times
        make no plan (close not after open, a span too short, longer than the waits, out of order)."""
        return business_days.plan_milestones(self.open_at, self.close_at, self.country, self.overrides)

    def check_drop_recipients(self) -> None:
        """Sales recipients of emailed drops are on the drop allow-list (checked again at send, with
        each salesperson of the contacts file)."""
        if "email" not in self.drop_channels:
            return
        for position, address in enumerate(self.sales_recipients):
            if not addresses.is_allowed(address, self.drop_allowed):
                raise WaveError(
                    f"sales_recipients[{position}] {address!r} is not on the drop allow-list "
                    f"[{', '.join(self.drop_allowed)}]: raw data only goes to listed addresses and whole domains"
                )

    def to_json(self) -> str:
        return storage.dumps({**asdict(self), "wave_id": self.wave_id})


def given(params: dict[str, Any], name: str, default: Any) -> Any:
    """The field's value, or `default` when it is missing or None (left empty in the form)."""
    value = params.get(name)
    return default if value is None else value


def parse_items(params: dict[str, Any], name: str, parse: Callable[[str], str]) -> list[str]:
    """Each item of a list field parsed by `parse`; a WaveError names the field and the item."""
    items = params.get(name) or []
    if isinstance(items, str) or not isinstance(items, list | tuple):
        raise WaveError(f"{name} must be a list with one address per item, got {items!r}")
    parsed = []
    for position, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except addresses.AddressError as exc:
            raise WaveError(f"{name}[{position}] {item!r} {exc}") from exc
    return parsed


def parse_sender(params: dict[str, Any], name: str) -> str:
    """A sender field: one address, a display name allowed; a WaveError names the field."""
    try:
        return addresses.mailbox(params[name])
    except addresses.AddressError as exc:
        raise WaveError(f"{name} {params[name]!r} {exc}") from exc


def optional_days(params: dict[str, Any], name: str) -> int | None:
    """A day count that may be left empty (None); never negative."""
    value = params.get(name)
    if value in (None, ""):
        return None
    days = int(value)
    if days < 0:
        raise ValueError(f"{name} must be 0 or more days, got {days}")
    return days


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def required_time(params: dict[str, Any], name: str) -> dt.datetime:
    """The time of a field every wave has (a ValueError when it is empty)."""
    moment = parse_time(params[name])
    if moment is None:
        raise ValueError(f"{name} is empty")
    return moment


def plan_wave(
    engine: Engine, params: WaveParams, run: tuple[str, str] | None = None, starts_at: dt.datetime | None = None
) -> dict[str, str]:
    """Store the wave, the Airflow `(dag_id, run_id)` running it, and its milestones; return the
    milestones as ISO strings. Re-planning a wave that already exists keeps its status and
    completed milestones (and the run that last planned it).

    `starts_at` is when the run that will wait for the milestones starts (the DAG's plan task
    gives the time now): a new wave whose open is already past, or a last milestone beyond the
    waits' timeout from then, is refused (CalendarError). Without it (history, a single step
    under test) the plan is stored as given."""
    milestones = params.milestones()
    if starts_at is not None:
        _check_run_times(engine, params.wave_id, milestones, starts_at)
    now = storage.utcnow()
    storage.execute(
        engine,
        storage.query("upsert_wave"),
        {
            "wave_id": params.wave_id,
            "program": params.program,
            "name": params.wave_name,
            "country": params.country,
            "params": params.to_json(),
            "open_at": params.open_at,
            "close_at": params.close_at,
            "now": now,
            "dag_id": run[0] if run else None,
            "run_id": run[1] if run else None,
        },
    )
    storage.execute(
        engine,
        storage.query("upsert_milestone"),
        [{"wave_id": params.wave_id, "milestone": name, "due_at": due} for name, due in milestones.items()],
    )
    return {name: due.isoformat() for name, due in milestones.items()}


def _check_run_times(engine: Engine, wave_id: str, milestones: dict[str, dt.datetime], starts_at: dt.datetime) -> None:
    """Refuse a run that cannot keep the plan; a wave planned before (a re-run) may have opened."""
    new = storage.fetch_one(engine, "SELECT wave_id FROM waves WHERE wave_id = :w", w=wave_id) is None
    if problems := business_days.run_problems(milestones, starts_at, new):
        raise business_days.CalendarError(f"wave {wave_id!r} cannot be planned: {'; '.join(problems)}")


def load_params(engine: Engine, wave_id: str) -> WaveParams:
    row = storage.fetch_one(engine, "SELECT params FROM waves WHERE wave_id = :w", w=wave_id)
    if row is None:
        raise WaveError(f"wave {wave_id!r} is not planned")
    return WaveParams.from_params(json.loads(row["params"]), planning=False)


def set_status(engine: Engine, wave_id: str, status: str) -> None:
    """Move the wave forward to `status`; a re-run never moves it back (a closed wave stays closed)."""
    later = {f"s{i}": s for i, s in enumerate(STATUSES[STATUSES.index(status) + 1 :])}
    closed = ", closed_at = COALESCE(closed_at, :now)" if status == "closed" else ""
    not_later = f" AND status NOT IN ({', '.join(':' + k for k in later)})" if later else ""
    storage.execute(
        engine,
        f"UPDATE waves SET status = :status{closed} WHERE wave_id = :w{not_later}",
        {"status": status, "w": wave_id, "now": storage.utcnow(), **later},
    )


def milestone_due(engine: Engine, wave_id: str, milestone: str) -> dt.datetime:
    row = storage.fetch_one(
        engine, "SELECT due_at FROM wave_milestones WHERE wave_id = :w AND milestone = :m", w=wave_id, m=milestone
    )
    if row is None:
        raise WaveError(f"wave {wave_id!r} has no milestone {milestone!r}")
    due = storage.as_utc(row["due_at"])
    assert due is not None  # wave_milestones.due_at is NOT NULL
    return due


def mark_done(engine: Engine, wave_id: str, milestone: str) -> None:
    storage.execute(
        engine,
        "UPDATE wave_milestones SET done_at = COALESCE(done_at, :now) WHERE wave_id = :w AND milestone = :m",
        {"now": storage.utcnow(), "w": wave_id, "m": milestone},
    )


def previous_wave_id(engine: Engine, wave_id: str) -> str | None:
    """The latest earlier wave of the same program that has closed."""
    row = storage.fetch_one(engine, storage.query("previous_wave"), wave_id=wave_id)
    return row["wave_id"] if row else None
