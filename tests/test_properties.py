"""Property-based: contacts files as customers' systems export them, through the whole wave's domain.

Hypothesis writes contacts files with any optional column blank in any row, Unicode in every text
column (CJK, Hebrew, emoji, combining marks, formula-like text, pasted control characters),
duplicates that differ only by case, four encodings and three delimiters, then answers from some of
the contacts (no comment, multi-line ones, control characters, skipped pillars) recorded through the
survey form's own validation. Each example runs, without the scheduler, on a fresh SQLite NPS DB:
the audience load and snapshot, the raw-data drop (every XLSX cell read back with openpyxl), routing
by the shipped rules, the detractor alerts posted to a real chat webhook, the score-band and
flash-results emails through a real SMTP server, and the retrospective (report and email).

It asserts what must hold for every file: nothing crashes; rows in = loaded + quarantined, each
quarantined row with a reason naming its field; no 'nan', 'None', 'NaT' or '<NA>' in any text,
cell or post; every salesperson's file holds only their accounts. Derandomized: CI sees the same
examples every run.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devkit.servers import ChatSink, SmtpServer
from include.nps import pipeline
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.realtime import channels, chat_messages, new_responses
from include.nps.wave import (
    audience,
    band_emails,
    flash_results,
    mailings,
    responses,
    routing,
    routing_rules,
    sales_drops,
    stats,
    waves,
)
from tests.factories import planned_wave

# Text as exports carry it: Latin with diacritics, CJK, Hebrew, emoji (one with a skin tone), combining
# marks, markup, formula-like starts, and what slips in from copy and paste: control characters (NUL,
# a bell, a tab, a line break inside a quoted cell), a right-to-left override, a zero-width space.
PIECES = (
    "Ada", "Zoë", "O'Brien", "Q&A", "<b>x</b>", "顧客", "満足度", "支持", "שלום", "מצוין", "😀",
    "👍🏽", "e\u0301", "n\u0303o", "=1+1", "+45", "@home", " ", "-", "Ünïcödé", "日本語テキスト",
    "\x00", "\x07", "\t", "\n", "\u202e", "\u200b",
)  # fmt: skip
SELLERS = ("seller1@vendor.example", "seller2@vendor.example", "Seller3@Vendor.example")
CSMS = ("csm1@vendor.example", "csm2@vendor.example")
LOCALES = ("en", "ja", "zh", "he", "nb", "JA", "pt-BR", "xx")
TIERS = ("strategic", "Enterprise", "smb", "中堅", "מפתח")
COUNTRIES = ("US", "JP", "IL", "NO", "de")
VIP = ("true", "FALSE", "yes", "0", "y")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp932")
DELIMITERS = (",", ";", "\t")
PILLARS = [
    {"id": "support", "text": "サポートは? & <b>support</b>", "scale": "1-5"},
    {"id": "value", "text": "Value for money? שווי", "scale": "0-10"},
]
MISSING = re.compile(r"\bnan\b|\bNone\b|\bNaT\b|<NA>")
URL = re.compile(r"(https?|cid|data):\S+")
WAVE_NAME = "Q4 顧客"


def texts(encoding: str = "utf-8") -> st.SearchStrategy[str]:
    """Text of one to four pieces the file's encoding can hold, starting with a visible one."""
    pieces = [piece for piece in PIECES if _holds(piece, encoding)]
    visible = [piece for piece in pieces if piece.strip() and piece.isprintable()]
    return st.tuples(st.sampled_from(visible), st.lists(st.sampled_from(pieces), max_size=3)).map(
        lambda parts: parts[0] + "".join(parts[1])
    )


def _holds(value: str, encoding: str) -> bool:
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


text = texts()
blank_or = lambda values: st.one_of(st.just(""), values)  # noqa: E731


@dataclass(frozen=True)
class ContactsFile:
    rows: list[dict[str, str]]
    encoding: str
    delimiter: str
    line_end: str

    def write(self, path: Path) -> Path:
        columns = list(self.rows[0])
        out = io.StringIO(newline="")
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator=self.line_end)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in self.rows)
        content, encoding = encoded(out.getvalue(), self.encoding)
        event(f"written as {encoding}, delimiter {self.delimiter!r}")
        path.write_bytes(content)
        return path


def encoded(content: str, encoding: str) -> tuple[bytes, str]:
    """The file's bytes and encoding (UTF-8 with a BOM when CP932 cannot hold a generated address)."""
    if encoding == "cp932" and not _holds(content, encoding):
        return codecs.BOM_UTF8 + content.encode("utf-8"), "utf-8-sig"
    return content.encode(encoding), encoding


@st.composite
def accounts(draw: st.DrawFn, number: int, encoding: str) -> dict[str, str]:
    """One account's columns, each optional one blank or not."""
    text = texts(encoding)
    return {
        "account_id": draw(st.sampled_from([i for i in ("A", "Ä", "顧客-", "חשבון") if _holds(i, encoding)]))
        + str(number),
        "account_name": draw(text),
        "account_tier": draw(blank_or(st.sampled_from([t for t in TIERS if _holds(t, encoding)]) | text)),
        "account_country": draw(blank_or(st.sampled_from(COUNTRIES))),
        "sales_owner": draw(blank_or(st.sampled_from(SELLERS))),
        "csm": draw(blank_or(st.sampled_from(CSMS))),
        "vip": draw(blank_or(st.sampled_from(VIP))),
    }


@st.composite
def contacts_files(draw: st.DrawFn) -> ContactsFile:
    """3-8 contacts of 1-3 accounts; some rows repeat an earlier address in other case, some lack a name.
    All text in the encoding's repertoire (CP932: Japanese and ASCII, no Hebrew, accents or emoji)."""
    encoding = draw(st.sampled_from(ENCODINGS))
    text = texts(encoding)
    owners = [draw(accounts(n, encoding)) for n in range(1, draw(st.integers(1, 3)) + 1)]
    rows: list[dict[str, str]] = []
    for number in range(1, draw(st.integers(3, 8)) + 1):
        email = f"{draw(st.sampled_from(['user', 'Kunde', 'info']))}{number}@acme{number % 3}.example"
        if rows and draw(st.integers(0, 7)) == 0:  # the same address again, in other case
            email = draw(st.sampled_from(rows))["email"].swapcase()
        contact_id = draw(st.sampled_from([i for i in ("C", "c", "顧客", "קשר-") if _holds(i, encoding)])) + str(number)
        # An earlier id in other case: another contact (ids are case-sensitive), or the same id again
        # when it has no case (顧客1): a duplicate.
        if rows and draw(st.integers(0, 7)) == 0:
            contact_id = draw(st.sampled_from(rows))["contact_id"].swapcase()
        row = {
            "contact_id": contact_id,
            "email": email,
            "name": "" if draw(st.integers(0, 9)) == 0 else draw(text),
            "locale": draw(blank_or(st.sampled_from(LOCALES))),
            "role": draw(blank_or(text)),
            **draw(st.sampled_from(owners)),
        }
        row["timezone"] = draw(blank_or(st.sampled_from(["Asia/Tokyo", "Asia/Jerusalem", "Europe/Oslo"])))
        rows.append(row)
    return ContactsFile(
        rows=rows,
        encoding=encoding,
        delimiter=draw(st.sampled_from(DELIMITERS)),
        line_end=draw(st.sampled_from(["\r\n", "\n"])),
    )


comments = st.one_of(
    st.none(),
    st.just(""),
    text,
    st.lists(text, min_size=2, max_size=3).map("\n".join),  # several lines, each to be quoted
)


@st.composite
def survey_forms(draw: st.DrawFn) -> dict[str, str]:
    """The survey form as sent: any score, any comment (or none), each pillar answered or skipped."""
    return {
        "score": str(draw(st.integers(0, 10))),
        "comment": draw(comments) or "",
        "pillar_support": draw(blank_or(st.integers(1, 5).map(str))),
        "pillar_value": draw(blank_or(st.integers(0, 10).map(str))),
    }


# --- real servers and a fresh NPS DB per example ------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One SMTP server and one chat webhook for the module; NPS_HOME is set per example."""
    folder = tmp_path_factory.mktemp("properties")
    with (
        SmtpServer(folder / "mail") as smtp,
        ChatSink(folder / "chat" / "posts.jsonl") as chat,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("AIRFLOW_CONN_NPS_SMTP", smtp.connection_uri())
        env.setenv("AIRFLOW_CONN_NPS_CHAT", chat.connection_uri())
        for name in ("NPS_DB_URL", "AIRFLOW_CONN_NPS_DB", "NPS_ROUTING_RULES", "NPS_CHAT_USERS", "NPS_TRACKER"):
            env.delenv(name, raising=False)
        env.setenv("NPS_ACCOUNT_URL_TEMPLATE", "https://crm.example.com/accounts/{account_id}")
        yield Servers(folder, smtp, chat, env, itertools.count())


@dataclass
class Servers:
    folder: Path
    smtp: SmtpServer
    chat: ChatSink
    env: pytest.MonkeyPatch
    examples: itertools.count

    def fresh(self) -> tuple[Path, object]:
        """A new NPS home and its migrated SQLite NPS DB; mail and chat posts of earlier examples removed."""
        from include.nps.core.connections import nps_engine

        home = self.folder / f"example-{next(self.examples)}"
        self.env.setenv("NPS_HOME", str(home))
        for old in self.smtp.spool.folder.glob("*.eml"):
            old.unlink()
        self.chat.path.write_text("", encoding="utf-8")
        return home, nps_engine()

    def emails(self, kind: str) -> list:
        return [m for m in self.smtp.spool.messages() if m["X-NPS-Kind"] == kind]

    def posts(self) -> list[dict]:
        return [json.loads(line) for line in self.chat.path.read_text(encoding="utf-8").splitlines() if line]


def assert_clean(where: str, value: object) -> None:
    """No missing value printed as text: 'nan', 'None', 'NaT', '<NA>' (links aside)."""
    value = URL.sub("", str(value))
    found = MISSING.search(value)
    assert found is None, f"{where}: {found.group()!r} in {value[max(found.start() - 300, 0) : found.end() + 100]!r}"


def email_texts(message) -> list[str]:
    """Subject and every text part of an email, decoded."""
    parts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return [str(message["Subject"]), *parts]


# --- the property ---------------------------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(contacts=contacts_files(), data=st.data())
def test_any_contacts_file_goes_through_the_wave(servers, contacts, data):
    home, engine = servers.fresh()
    path = contacts.write(home / f"contacts{'.tsv' if contacts.delimiter == chr(9) else '.csv'}")
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    wave = planned_wave(engine, path, name=WAVE_NAME, start=opened, pillar_questions=PILLARS, share_quotes=True)

    # Audience: every row loaded or quarantined, with the field named in its reason.
    loaded = audience.load_contacts(engine, wave.wave_id, path, max_rejected_share=1.0)
    assert loaded.rows == len(contacts.rows)
    assert loaded.loaded + loaded.quarantined == len(contacts.rows)
    for problem in loaded.problems:
        assert problem["field"] == "(row)" or problem["field"] in problem["reason"], problem
        event(f"quarantined on {problem['field']}")
    emails: set[str] = set()
    ids: set[str] = set()
    for number, row in enumerate(contacts.rows, start=2):
        if row["email"].casefold() in emails:
            assert _problem(loaded, number, "email")["reason"].startswith("duplicate email in the file")
        if row["contact_id"] in ids:
            assert _problem(loaded, number, "contact_id")["reason"].startswith("duplicate contact_id in the file")
        emails.add(row["email"].casefold())
        ids.add(row["contact_id"])
        if not row["name"].strip():
            assert _problem(loaded, number, "name")["reason"] == "name is empty"
    counts = audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 90, wave.open_at)
    assert sum(counts.values()) == loaded.loaded
    event(f"rows quarantined: {'some' if loaded.quarantined else 'none'}")
    if not counts.get("included"):
        event("nobody included")
        return  # the wave stops at its audience check ("the audience is not empty"): nothing more runs

    # Answers from some of the invited contacts.
    waves.set_status(engine, wave.wave_id, "open")
    invited = mailings.mailing_recipients(engine, wave.wave_id, "invitation")
    outbox.enqueue(engine, wave.wave_id, "invitation", [(c["contact_id"], c["email"]) for c in invited])
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": opened})
    some = st.lists(st.sampled_from(invited), min_size=min(len(invited), 2), unique_by=lambda c: c["contact_id"])
    answering = data.draw(some, "answering")
    for contact in answering:  # through the form's own validation, as the survey app records them
        answer = responses.parse_submission(data.draw(survey_forms(), "form"), wave.pillar_questions)
        responses.record_response(engine, wave.wave_id, contact["contact_id"], answer)
    waves.set_status(engine, wave.wave_id, "closed")
    event(f"responses: {min(len(answering), 3)}{'+' if len(answering) >= 3 else ''}")

    check_drop(engine, wave)
    check_routing_and_alerts(servers, engine, wave)
    check_band_emails(servers, engine, wave)
    check_flash_and_retrospective(servers, engine, wave, home)


def _problem(loaded: audience.LoadResult, number: int, field: str) -> dict:
    found = [p for p in loaded.problems if (p["row_number"], p["field"]) == (number, field)]
    assert found, f"row {number} not quarantined on {field}: {loaded.problems}"
    return found[0]


def check_drop(engine, wave: waves.WaveParams) -> None:
    """The post-wave drop: every cell readable and clean; each salesperson's file only their accounts."""
    cutoff = dt.datetime.now(dt.UTC)
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions], as_of=cutoff)
    sheet = sales_drops.drop_frame(frame, wave.detractor_max, wave.pillar_questions, cutoff, {})
    accounts = stats.per_account(engine, wave.wave_id)
    parts = sales_drops.drop_parts(sheet, accounts[accounts["responses"] == 0])
    files = sales_drops.build_drop(wave.wave_id, "postwave", parts, cutoff, ["xlsx", "csv"])
    owner_of = {r["contact_id"]: r["sales_owner"] for r in storage.records(frame)}
    for f in files:
        if f.name.endswith(".csv"):
            assert_clean(f.name, f.content.decode("utf-8-sig"))
            continue
        book = openpyxl.load_workbook(io.BytesIO(f.content))
        for worksheet in book.worksheets:
            for row in worksheet.iter_rows(values_only=True):
                for value in row:
                    assert_clean(f"{f.name} {worksheet.title}", value if value is not None else "")
        contact_ids = [
            sales_drops.unneutralise(str(r[0])) for r in book["Responses"].iter_rows(min_row=2, values_only=True)
        ]
        assert len(contact_ids) == f.rows
        if f.audience == sales_drops.COMPLETE:
            assert sorted(contact_ids) == sorted(owner_of)
        else:
            assert {owner_of[c] for c in contact_ids} == {f.audience}
            assert sorted(contact_ids) == sorted(c for c, owner in owner_of.items() if owner == f.audience)


def _quote_block(post: str) -> str:
    """The lines of a detractor post between its headline and the CSM line: the quoted comment."""
    lines = post.splitlines()
    return "\n".join(lines[1 : next(i for i, line in enumerate(lines) if line.startswith("CSM: "))])


def check_routing_and_alerts(servers: Servers, engine, wave: waves.WaveParams) -> None:
    """Every detractor routed to a person or CS ops; each alert posted once, whole comment, clean."""
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    fallback = wave.cs_ops_recipients[0]
    rules = routing_rules.load()
    routed = routing.route_detractors(engine, wave.wave_id, frame, wave.detractor_max, fallback, {}, rules=rules)
    records = storage.records(frame)
    detractors = [r for r in records if r["score"] <= wave.detractor_max]
    assert routed == len(detractors)
    owners = {r["contact_id"]: r["owner"] for r in storage.records(routing.followups_frame(engine, wave.wave_id))}
    for r in detractors:
        assert owners[r["contact_id"]] in {r["sales_owner"], r["csm"], fallback} - {None}

    new_responses.alert_detractors(engine, wave.wave_id)
    new_responses.alert_detractors(engine, wave.wave_id)  # a re-run posts nothing twice
    posts = servers.posts()
    assert len(posts) == len(detractors)
    for post in posts:
        assert_clean("chat post", post["text"])
    # Each detractor's comment is quoted whole and escaped, in one post of its own.
    expected = Counter(
        chat_messages.slack_quote(r["comment"]) if r["comment"] else "> _(no comment)_" for r in detractors
    )
    assert Counter(_quote_block(p["text"]) for p in posts) == expected
    contexts = new_responses.wave_alert_contexts(engine, wave.wave_id, channels.Settings.from_env())
    for context in contexts.values():
        for channel in ("program", "vip", "executive"):
            assert_clean(f"slack {channel}", chat_messages.slack_message({**context, "channel": channel})["text"])
        assert_clean("teams card", json.dumps(chat_messages.teams_message(context), ensure_ascii=False))


def check_band_emails(servers: Servers, engine, wave: waves.WaveParams) -> None:
    """The score-band email of every respondent, as `band_emails.send_at_close` sends it, clean."""
    frame = responses.responses_frame(engine, wave.wave_id, [p["id"] for p in wave.pillar_questions])
    frame["band"] = frame["score"].map(responses.band)
    scores = dict(zip(frame["contact_id"], frame["score"], strict=True))
    with SmtpTransport() as transport:
        for band, kind in responses.BAND_KINDS.items():
            contacts = band_emails.recipients(frame[frame["band"] == band])
            sender = wave.executive_sender if band == "critical" else None
            mailings.send_to_contacts(engine, wave, kind, contacts, transport, band_emails.score_of(scores), sender)
    sent = [m for kind in responses.BAND_KINDS.values() for m in servers.emails(kind)]
    assert len(sent) == len(frame)
    for message in sent:
        for part in email_texts(message):
            assert_clean(f"{message['X-NPS-Kind']} to {message['To']}", part)


def check_flash_and_retrospective(servers: Servers, engine, wave: waves.WaveParams, home: Path) -> None:
    """The flash results to every contact and the retrospective, from the pipeline's own context builders."""
    recipients = mailings.mailing_recipients(engine, wave.wave_id, "flash_results")
    with SmtpTransport() as transport:
        context = flash_results.reader_context(engine, wave, *pipeline._comment_reader())
        mailings.send_to_contacts(engine, wave, "flash_results", recipients, transport, context)
    flash = servers.emails("flash_results")
    assert len(flash) == len(recipients)
    for message in flash:
        for part in email_texts(message):
            assert_clean(f"flash results to {message['To']}", part)

    result = pipeline.run_retrospective(wave.wave_id)
    assert_clean("retrospective report", Path(result["report"]).read_text(encoding="utf-8"))
    (email,) = servers.emails("retrospective")
    for part in email_texts(email):
        assert_clean("retrospective email", part)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    rows=st.lists(
        st.tuples(
            st.none() | st.text(max_size=3),
            st.none() | st.integers(-5, 5),
            st.none() | st.floats(allow_nan=True, allow_infinity=False),
            st.none() | st.datetimes(timezones=st.just(dt.UTC)),
            st.none() | st.booleans(),
        ),
        max_size=6,
    )
)
def test_records_turn_every_missing_value_into_none(rows):
    """Whatever pandas made of a missing value (NaN in a text or float column, NA in a nullable integer or
    boolean column, NaT in a time column), a record holds None, and every other value as plain Python."""
    import pandas as pd

    columns = list(zip(*rows, strict=True)) if rows else [()] * 5
    frame = pd.DataFrame(
        {
            "text": pd.array(columns[0], dtype="str"),
            "count": pd.array(columns[1], dtype="Int64"),
            "ratio": pd.array([float("nan") if v is None else v for v in columns[2]], dtype="float64"),
            "at": pd.to_datetime(pd.Series(columns[3], dtype=object), utc=True),
            "flag": pd.array(columns[4], dtype="boolean"),
        }
    )
    records = storage.records(frame)
    for record, row in zip(records, rows, strict=True):
        ratio = None if row[2] is None or row[2] != row[2] else row[2]
        assert record == {"text": row[0], "count": row[1], "ratio": ratio, "at": row[3], "flag": row[4]}
        assert all(type(value) in (str, int, float, bool, dt.datetime, type(None)) for value in record.values())
