"""Benchmark: closing a wave, its flash figures and its retrospective at scale, each beside the
plain pandas a data engineer would write for the same figures (read the responses once, compute
the NPS and group by), measured in the same run.

`python -m benchmarks.scale_close SIZE [DB]` (DB: `sqlite`, the default, `pg` for a throwaway
PostgreSQL cluster, or a PostgreSQL URL, where a fresh database is made) generates in bulk
(executemany on SQLite, COPY on PostgreSQL; not through the survey form) a program of two waves of
SIZE responses each: a quarter more contacts invited, four contacts an account, 40% of the
responses with a comment of one to three sentences in the contact's language, half the invited
reminded, 1.5% bounced or opted out, a few answers the close must set aside (no invitation, after
the close). Then each step runs in a child process ('spawn'), after the libraries it uses are
imported and Great Expectations' context made (their one-off cost is a row of its own): wall time
of the step, and peak RSS = the child's own `resource.getrusage(RUSAGE_SELF).ru_maxrss`. The
steps run in the wave's order on the same database, each plain alternative in its own child.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import harness

PROGRAM = "scale"
PILLARS = [
    {"id": "support", "text": "How satisfied are you with our support?", "scale": "1-5"},
    {"id": "value", "text": "How would you rate the value for money?", "scale": "0-10"},
]
PREVIOUS_OPEN = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
CURRENT_OPEN = dt.datetime(2026, 4, 6, 9, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=14)
CONTACTS_PER_ACCOUNT = 4
INVITED_PER_RESPONSE = 1.25
COMMENT_SHARE = 0.4
LOCALES = ["en"] * 6 + ["ja", "zh", "he", "nb"]
ROLES = ["admin", "user", "buyer", "executive", "developer", "finance"]
TIERS = ["strategic", "enterprise", "mid-market", "smb", "smb"]
COUNTRIES = ["US", "US", "GB", "DE", "JP", "IL", "NO", "CN"]
SENTENCES = {
    "en": [
        "Too expensive for what we use",
        "The price went up again this year",
        "Support never answers our tickets",
        "Great support team, quick answers",
        "The new UI is confusing",
        "Reports load slowly on Mondays",
        "Outage last week cost us a full day",
        "Saves us hours every week",
        "Please add an export to Excel",
        "The mobile app lags",
        "Onboarding took far too long",
        "Easy to use for the whole team",
        "Integration with our CRM keeps failing",
        "Would love better dashboards",
        "Our account manager is very helpful",
        "Billing is hard to follow",
    ],
    "ja": ["サポートの返答が遅いです", "とても使いやすいです", "価格が高すぎます", "レポートが遅い", "障害が多い"],
    "zh": ["非常好用", "价格太贵", "客服回复很慢", "系统经常崩溃", "报表功能很好"],
    "he": ["הממשק מסורבל", "המחיר יקר מדי", "התמיכה מצוינת", "יש הרבה תקלות", "קל לשימוש"],
    "nb": ["Bra, men dyrt", "Supporten svarer raskt", "Appen er treg", "Mye feil i det siste", "Enkel å bruke"],
}
DETAILS = ["", " since March", " for our team of {n}", " in {n} of our projects", " (ticket {n})", " again"]


# --- the data -----------------------------------------------------------------------------------


def wave_params(name: str, opened: dt.datetime) -> dict[str, Any]:
    return {
        "wave_name": name,
        "program": PROGRAM,
        "product": "Acme Cloud",
        "country": "US",
        "audience_csv": "generated",
        "open_at": opened.isoformat(),
        "close_at": (opened + SPAN).isoformat(),
        "pillar_questions": PILLARS,
        "sales_recipients": ["sales@vendor.example"],
        "cs_ops_recipients": ["csops@vendor.example"],
        "sender": "CS <cs@vendor.example>",
        "executive_sender": "CEO <ceo@vendor.example>",
        "share_quotes": True,
        "frequency_days": 0,
    }


def _stamp(moment: dt.datetime) -> str:
    """A time as the NPS DB keeps it (what the sqlite3 adapter writes for an aware UTC datetime)."""
    return moment.isoformat(" ")


def populate(engine: Any, size: int, seed: int = 21) -> dict[str, str]:
    """Two waves of `size` responses each (the previous one done, this one open and past its close
    time), written in bulk; return their ids."""
    import numpy as np

    from include.nps.core import storage
    from include.nps.wave import waves

    rng = np.random.default_rng(seed)
    invited = int(size * INVITED_PER_RESPONSE)
    strangers = max(1, size // 1000)  # answered without an invitation: set aside by the close
    people = invited + strangers
    ids = {}
    for name, opened in (("previous", PREVIOUS_OPEN), ("current", CURRENT_OPEN)):
        wave = waves.WaveParams.from_params(wave_params(name, opened))
        waves.plan_wave(engine, wave)
        ids[name] = wave.wave_id
    now = _stamp(CURRENT_OPEN)
    accounts = -(-people // CONTACTS_PER_ACCOUNT)
    countries = rng.choice(COUNTRIES, accounts).tolist()
    _bulk(
        engine,
        "accounts",
        ("account_id", "name", "country", "tier", "sales_owner", "csm", "vip", "updated_at"),
        (
            (_account(a), f"Account {a} Ltd", countries[a], TIERS[a % len(TIERS)], f"seller{a % 50}@vendor.example",
             f"csm{a % 40}@vendor.example", TIERS[a % len(TIERS)] == "strategic", now)
            for a in range(accounts)
        ),
    )  # fmt: skip
    contacts = _contacts(people, rng)
    _bulk(
        engine,
        "contacts",
        ("contact_id", "account_id", "email", "name", "role", "locale", "bounced_at", "opted_out_at", "updated_at"),
        zip(*(contacts[k] for k in ("id", "account", "email", "name", "role", "locale", "bounced", "opted_out")),
            [now] * people, strict=True),
    )  # fmt: skip
    for name, opened in (("previous", PREVIOUS_OPEN), ("current", CURRENT_OPEN)):
        wave_id = ids[name]
        _bulk(
            engine,
            "wave_audience",
            ("wave_id", "contact_id", "account_id", "email", "name", "locale", "included", "snapshot_at"),
            ((wave_id, *row, True, _stamp(opened))
             for row in zip(*(contacts[k][:invited] for k in ("id", "account", "email", "name", "locale")),
                            strict=True)),
        )  # fmt: skip
        _bulk(
            engine,
            "outbox",
            ("wave_id", "kind", "recipient", "chunk", "address", "status", "attempts", "created_at", "sent_at"),
            _ledger(wave_id, contacts, invited, opened, rng),
        )
        answering = rng.choice(invited, size - (strangers if name == "current" else 0), replace=False)
        if name == "current":
            answering = np.concatenate([answering, np.arange(invited, people)])
        _bulk(
            engine,
            "responses",
            ("wave_id", "contact_id", "score", "comment", "pillar_answers", "answered_at", "updated_at", "revision"),
            _responses(wave_id, contacts, answering, opened, rng, late=name == "current"),
        )
    storage.execute(engine, "UPDATE waves SET status = 'done' WHERE wave_id = :w", {"w": ids["previous"]})
    storage.execute(engine, "UPDATE waves SET status = 'open' WHERE wave_id = :w", {"w": ids["current"]})
    _analyze(engine)
    return ids


def _account(number: int) -> str:
    return f"A{number:07d}"


def _contacts(people: int, rng: Any) -> dict[str, list]:
    """Column by column: id, account, email, name, role, locale, bounced and opted-out times."""
    numbers = range(people)
    roll = rng.random(people)
    during = [_stamp(CURRENT_OPEN + dt.timedelta(days=int(d))) for d in rng.integers(1, 14, people)]
    first = rng.choice(["Ada", "Noa", "Kenji", "Ingrid", "Wei", "Sam"], people).tolist()
    return {
        "id": [f"C{n:08d}" for n in numbers],
        "account": [_account(n // CONTACTS_PER_ACCOUNT) for n in numbers],
        "email": [f"c{n}@account{n // CONTACTS_PER_ACCOUNT}.example" for n in numbers],
        "name": [f"{f} Person{n}" for f, n in zip(first, numbers, strict=True)],
        "role": rng.choice(ROLES, people).tolist(),
        "locale": rng.choice(LOCALES, people).tolist(),
        "bounced": [d if r < 0.01 else None for d, r in zip(during, roll, strict=True)],
        "opted_out": [d if 0.01 <= r < 0.015 else None for d, r in zip(during, roll, strict=True)],
    }


def _ledger(wave_id: str, contacts: dict[str, list], invited: int, opened: dt.datetime, rng: Any) -> Iterator[tuple]:
    sent = _stamp(opened + dt.timedelta(minutes=5))
    reminded = _stamp(opened + dt.timedelta(days=7))
    remind = rng.random(invited) < 0.5
    for number, (contact_id, email) in enumerate(zip(contacts["id"][:invited], contacts["email"], strict=False)):
        chunk = number // 500
        yield (wave_id, "invitation", contact_id, chunk, email, "sent", 1, sent, sent)
        if remind[number]:
            yield (wave_id, "reminder", contact_id, chunk, email, "sent", 1, reminded, reminded)


SCORE_WEIGHTS = [2, 2, 2, 3, 3, 4, 6, 12, 20, 24, 22]


def _responses(
    wave_id: str, contacts: dict[str, list], answering: Any, opened: dt.datetime, rng: Any, late: bool
) -> Iterator[tuple]:
    import numpy as np

    n = len(answering)
    scores = rng.choice(11, n, p=np.array(SCORE_WEIGHTS) / sum(SCORE_WEIGHTS)).tolist()
    support, value = rng.integers(1, 6, n).tolist(), rng.integers(0, 11, n).tolist()
    skip = (rng.random(n) < 0.1).tolist()
    seconds = rng.integers(600, int(SPAN.total_seconds()) - 60, n)
    if late:
        seconds[rng.random(n) < 0.001] = int(SPAN.total_seconds()) + 7200  # after the close: set aside
    commented = (rng.random(n) < COMMENT_SHARE).tolist()
    pick = rng.random((n, 4))
    moments = np.datetime64(opened.replace(tzinfo=None), "s") + seconds.astype("timedelta64[s]")
    stamps = [f"{t[:10]} {t[11:]}+00:00" for t in np.datetime_as_string(moments, unit="s").tolist()]
    for i, number in enumerate(answering.tolist()):
        answered = stamps[i]
        pillars = f'{{"support": {support[i]}}}' if skip[i] else f'{{"support": {support[i]}, "value": {value[i]}}}'
        comment = _comment(contacts["locale"][number], pick[i]) if commented[i] else None
        yield (wave_id, contacts["id"][number], scores[i], comment, pillars, answered, answered, 1)


def _comment(locale: str, pick: Any) -> str:
    """One to three sentences of the locale's bank, each with a varying detail (comments differ)."""
    bank = SENTENCES[locale]
    count = 1 + int(pick[0] * 3)
    start = int(pick[1] * len(bank))
    sentences = []
    for k in range(count):
        detail = DETAILS[int(pick[2] * len(DETAILS) + k) % len(DETAILS)]
        sentences.append(bank[(start + 5 * k) % len(bank)] + detail.format(n=int(pick[3] * 997) + k))
    return ". ".join(sentences) + "."


def _bulk(engine: Any, table: str, columns: tuple[str, ...], rows: Iterable[tuple], batch: int = 50_000) -> None:
    """Insert rows fast: executemany on SQLite, COPY on PostgreSQL."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = engine.dialect.name == "postgresql"
        if not postgres:  # generated rows are consistent: no per-row parent lookups, no fsync
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("PRAGMA synchronous = OFF")
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        pending: list[tuple] = []
        for row in rows:
            pending.append(row)
            if len(pending) >= batch:
                _write(cursor, table, columns, pending, statement, postgres)
                pending = []
        if pending:
            _write(cursor, table, columns, pending, statement, postgres)
        raw.commit()
        if not postgres:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = FULL")
    finally:
        raw.close()


def _write(cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple], statement: str, pg: bool) -> None:
    if not pg:
        cursor.executemany(statement, rows)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows(tuple("\\N" if v is None else v for v in row) for row in rows)
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def _analyze(engine: Any) -> None:
    """Fresh planner statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would leave them."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


# --- the measured steps -----------------------------------------------------------------------------

READERS = 500  # one send task's chunk of flash-results readers
STEPS = (
    ("close (check every response, set aside)", "close"),
    ("classify the comments (once a wave)", "classify"),
    ("flash figures (prepare: compute, check, keep)", "flash"),
    ("flash per-reader context (a send task, 500 readers)", "reader"),
    ("retrospective (review + report file + email)", "retrospective"),
)


def configure(home: str, db_url: str | None) -> None:
    os.environ.update({"NPS_HOME": home, "NPS_SECRET_KEY": "bench", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    os.environ["NPS_DB_URL"] = db_url or f"sqlite:///{home}/nps.db"


def seed(home: str, db_url: str | None, size: int) -> dict[str, Any]:
    configure(home, db_url)
    from include.nps.core.connections import nps_engine

    started = time.perf_counter()
    ids = populate(nps_engine(), size)
    return {**ids, "seconds": time.perf_counter() - started}


def warm() -> dict[str, Any]:
    """The one-off cost every step's task pays before its work: importing Great Expectations and
    making its context (measured in a child of its own)."""
    started = time.perf_counter()
    from include.nps.wave import data_checks

    data_checks._batch_definition()
    return {"seconds": time.perf_counter() - started}


def product(home: str, db_url: str | None, step: str, wave_id: str) -> dict[str, Any]:
    """One step of the product, timed after its libraries are imported."""
    configure(home, db_url)
    import logging

    logging.disable(logging.WARNING)
    import matplotlib.pyplot  # noqa: F401 - the charts' import, paid once by any task

    from devkit.servers import SmtpServer
    from include.nps.core.connections import nps_engine
    from include.nps.delivery.transports import SmtpTransport
    from include.nps.wave import comment_parts, comment_themes, data_checks, waves

    engine = nps_engine()
    wave = waves.load_params(engine, wave_id)
    data_checks._batch_definition()
    themes = comment_themes.load_themes()
    sorter = comment_themes.KeywordClassifier(themes)
    with SmtpServer(Path(home) / f"mail-{step}") as smtp:
        os.environ["AIRFLOW_CONN_NPS_SMTP"] = smtp.connection_uri()
        with SmtpTransport():  # Airflow's connection lookup, imported once by any task
            pass
        readers = _readers(engine, wave_id) if step == "reader" else []
        started = time.perf_counter()
        extra = _step(step, engine, wave, themes, sorter, readers)
        seconds = time.perf_counter() - started
        mails = sorted(smtp.spool.folder.glob("*.eml"))
    if step == "classify":
        extra["parts"] = len(comment_parts.kept(engine, wave_id, themes, sorter))
    if mails:
        extra["email_kib"] = mails[-1].stat().st_size / 1024
    return {"seconds": seconds, **extra}


def _step(step: str, engine: Any, wave: Any, themes: Any, sorter: Any, readers: list[dict]) -> dict[str, Any]:
    from include.nps.wave import closing, comment_parts, flash_results, retrospective_report

    if step == "close":
        return closing.close(engine, wave)
    if step == "classify":
        return {"comments": comment_parts.keep(engine, wave.wave_id, themes, sorter)}
    if step == "flash":
        flash_results.check_figures(engine, wave, (themes, sorter))
        return {}
    if step == "reader":
        context = flash_results.reader_context(engine, wave, themes, sorter)
        return {"answered": sum(context(reader)["responded"] for reader in readers)}
    found = retrospective_report.review(engine, wave, themes, sorter)
    summary = retrospective_report.publish(engine, wave, found, themes, None)
    return {"report_mib": Path(summary["report"]).stat().st_size / 1048576, "attached": summary["report_attached"]}


def _readers(engine: Any, wave_id: str) -> list[dict[str, Any]]:
    """The flash results in the ledger (as the mailing's preparation leaves them) and the first chunk's readers."""
    from include.nps.core import storage

    storage.execute(
        engine,
        "INSERT INTO outbox (wave_id, kind, recipient, chunk, address, created_at) "
        "SELECT wave_id, 'flash_results', contact_id, 0, email, :now FROM wave_audience WHERE wave_id = :w "
        "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.wave_id = :w AND o.kind = 'flash_results')",
        {"w": wave_id, "now": storage.utcnow()},
    )
    storage.execute(
        engine,
        "UPDATE outbox SET chunk = 1 WHERE wave_id = :w AND kind = 'flash_results' AND recipient NOT IN "
        f"(SELECT contact_id FROM wave_audience WHERE wave_id = :w ORDER BY contact_id LIMIT {READERS})",
        {"w": wave_id},
    )
    return storage.fetch_all(engine, storage.query("chunk_recipients"), wave_id=wave_id, kind="flash_results", chunk=0)


def plain(home: str, db_url: str | None, step: str, wave_id: str) -> dict[str, Any]:
    """What a data engineer would write with pandas for the step's figures, timed after imports."""
    configure(home, db_url)
    import pandas as pd  # noqa: F401 - imported before the clock starts, as for the product

    from include.nps.core.connections import nps_engine
    from include.nps.wave import comment_themes

    engine = nps_engine()
    themes = comment_themes.load_themes()
    sorter = comment_themes.KeywordClassifier(themes)
    started = time.perf_counter()
    {"close": _plain_close, "classify": _plain_classify, "flash": _plain_flash, "reader": _plain_reader,
     "retrospective": _plain_retrospective}[step](engine, wave_id, Path(home), sorter)  # fmt: skip
    return {"seconds": time.perf_counter() - started}


def _read(engine: Any, sql: str, **params: Any) -> Any:
    import pandas as pd
    from sqlalchemy import text

    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def _plain_close(engine: Any, wave_id: str, home: Path, sorter: Any) -> None:
    """Read the responses and the invitations sent, mark what breaks a rule."""
    import json

    import pandas as pd
    from sqlalchemy import text

    answers = _read(
        engine,
        "SELECT contact_id, score, pillar_answers, answered_at, comment FROM responses WHERE wave_id = :w",
        w=wave_id,
    )
    sent = _read(
        engine, "SELECT recipient FROM outbox WHERE wave_id = :w AND kind = 'invitation' AND status = 'sent'", w=wave_id
    )
    window = _read(engine, "SELECT open_at, close_at FROM waves WHERE wave_id = :w", w=wave_id).iloc[0]
    pillars = pd.json_normalize(answers["pillar_answers"].map(json.loads).tolist())
    at = pd.to_datetime(answers["answered_at"], utc=True, format="mixed")
    bad = pd.Series("", index=answers.index)
    bad[~answers["contact_id"].isin(sent["recipient"])] += "not invited; "
    bad[(at < pd.Timestamp(window["open_at"], tz="UTC")) | (at > pd.Timestamp(window["close_at"], tz="UTC"))] += (
        "outside the window; "
    )
    bad[~answers["score"].between(0, 10)] += "score out of scale; "
    bad[~pillars.get("support", pd.Series(dtype=float)).fillna(1).between(1, 5)] += "support out of scale; "
    marked = answers.loc[bad != "", "contact_id"]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE responses SET quarantine_reason = :r WHERE wave_id = :w AND contact_id = :c"),
            [{"r": bad[i], "w": wave_id, "c": c} for i, c in marked.items()],
        )


def _plain_classify(engine: Any, wave_id: str, home: Path, sorter: Any) -> None:
    """The same classifier over every comment, nothing kept."""
    comments = _read(
        engine,
        "SELECT r.score, r.comment, c.locale FROM responses r JOIN contacts c USING (contact_id) "
        "WHERE r.wave_id = :w AND r.comment IS NOT NULL",
        w=wave_id,
    )
    for score, comment, locale in comments.itertuples(index=False):
        for part in sorter.split(comment, locale):
            sorter.classify(part, locale, int(score))


def _plain_figures(engine: Any, wave_id: str) -> dict[str, Any]:
    import json

    import pandas as pd

    figures = {}
    for wave in (wave_id, "scale-previous"):
        answers = _read(
            engine,
            "SELECT score, pillar_answers FROM responses WHERE wave_id = :w AND quarantine_reason IS NULL",
            w=wave,
        )
        pillars = pd.json_normalize(answers["pillar_answers"].map(json.loads).tolist())
        promoters, detractors = (answers["score"] >= 9).mean(), (answers["score"] <= 6).mean()
        figures[wave] = {"nps": round(100 * (promoters - detractors), 1), "pillars": pillars.mean().round(2).to_dict()}
    return figures


def _plain_flash(engine: Any, wave_id: str, home: Path, sorter: Any) -> None:
    _plain_figures(engine, wave_id)


def _plain_reader(engine: Any, wave_id: str, home: Path, sorter: Any) -> None:
    """The figures and who answered, then a context per reader of the chunk."""
    figures = _plain_figures(engine, wave_id)
    answered = set(_read(engine, "SELECT contact_id FROM responses WHERE wave_id = :w", w=wave_id)["contact_id"])
    readers = _read(
        engine, "SELECT recipient FROM outbox WHERE wave_id = :w AND kind = 'flash_results' AND chunk = 0", w=wave_id
    )
    [{"figures": figures, "responded": r in answered} for r in readers["recipient"]]


def _plain_retrospective(engine: Any, wave_id: str, home: Path, sorter: Any) -> None:
    """Read every invited contact with its answer once, NPS per account and segment, every comment,
    one HTML file of it all (no classification: `classify` is its own row)."""
    from include.nps.core import storage

    invited = _read(engine, storage.query("invited_contacts"), wave_id=wave_id)
    comments = _read(
        engine,
        "SELECT r.score, acc.name AS account, r.comment FROM responses r JOIN contacts c USING (contact_id) "
        "JOIN accounts acc ON acc.account_id = c.account_id "
        "WHERE r.wave_id = :w AND r.comment IS NOT NULL AND r.quarantine_reason IS NULL ORDER BY r.score",
        w=wave_id,
    )
    invited = invited.assign(
        answered=invited["score"].notna(), promoter=invited["score"] >= 9, detractor=invited["score"] <= 6
    )
    tables = []
    for by in ("account_name", "region", "tier", "role"):
        grouped = invited.groupby(by).agg(invited=("contact_id", "size"), responses=("answered", "sum"),
                                          promoters=("promoter", "sum"), detractors=("detractor", "sum"))  # fmt: skip
        grouped["nps"] = (100 * (grouped["promoters"] - grouped["detractors"]) / grouped["responses"]).round(1)
        tables.append(grouped.to_html())
    (home / "plain-retrospective.html").write_text("".join(tables) + comments.to_html(), encoding="utf-8")


def measure(size: int, db: str = "sqlite") -> list[dict[str, Any]]:
    """Rows {step, seconds, peak_rss_mib, plain_seconds, plain_rss_mib}: on SQLite, on a throwaway
    PostgreSQL cluster ("pg"), or on a fresh database of the PostgreSQL server of a URL."""
    with harness.database(db) as db_url:
        return _measure(size, db_url)


def _measure(size: int, db_url: str | None) -> list[dict[str, Any]]:
    home = tempfile.mkdtemp(prefix="nps-bench-close-")
    seeded = harness.in_child(seed, home, db_url, size)
    print(f"generated {size:,} responses a wave in {seeded['seconds']:.0f} s", flush=True)
    warmed = harness.in_child(warm)
    rows = [{"step": "import Great Expectations + its context (every checking task)", **_ours(warmed)}]
    for label, step in STEPS:
        theirs = harness.in_child(plain, home, db_url, step, seeded["current"]) if step == "close" else None
        ours = harness.in_child(product, home, db_url, step, seeded["current"])
        theirs = theirs or harness.in_child(plain, home, db_url, step, seeded["current"])
        rows.append(
            {"step": label, **_ours(ours), "plain_seconds": theirs["seconds"], "plain_rss_mib": theirs["peak_rss_mib"]}
        )
        print(f"  {label}: {_facts(ours)}", flush=True)
    return rows


def _ours(result: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": result["seconds"], "peak_rss_mib": result["peak_rss_mib"]}


def _facts(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    size = int(float(args[0])) if args else 100_000
    db = args[1] if len(args) > 1 else "sqlite"
    where = "PostgreSQL" if db != "sqlite" else "SQLite"
    harness.print_rows(f"close, flash figures and retrospective, {size:,} responses a wave, {where}", measure(size, db))


if __name__ == "__main__":
    main()
