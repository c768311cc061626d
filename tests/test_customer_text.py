"""What customers read, line by line: every plain-text part keeps the lines its template has in
every language, no missing value shows as "nan", "None", "NaT" or "n/a", and every time is written
in the reader's own zone, named."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from include.nps import pipeline
from include.nps.core import emails, i18n, signed_links, storage
from include.nps.delivery import outbox
from include.nps.delivery.outbox import CUSTOMER_KINDS
from include.nps.wave import audience, waves
from tests.factories import FIELDS, contact, email_context, flash_figures, wave_params

LOCALES = ("en", "ja", "zh", "he", "nb")
START, END = "\x02", "\x03"  # where each translated message begins and ends, in a marked rendering
# A message that ends a sentence or a clause, followed in the same line by the next message: glued.
CLAUSE_END = re.compile(rf"[.,:;!?。，：；！？、]{END}[ \t]*{START}")
MISSING_SHOWN = re.compile(r"\b(?:nan|NaN|None|NaT|null|n/a|N/A|undefined)\b")
SIGN_OFF = {  # kind: the closing words and the team that signs
    "preannouncement": ("Thank you in advance,", "The %(product)s Customer Success team"),
    "invitation": ("Thank you,", "The %(product)s Customer Success team"),
    "reminder": ("Thank you,", "The %(product)s Customer Success team"),
    "followup_promoter": ("With thanks,", "The %(product)s Customer Success team"),
    "followup_passive": ("Best regards,", "The %(product)s Customer Success team"),
    "followup_detractor": ("Sincerely,", "The %(product)s Customer Success team"),
    "followup_critical": ("Sincerely,", "The %(product)s executive team"),
}


class Marked:
    """A catalog that marks where each message it translates begins and ends."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def gettext(self, message: str) -> str:
        return START + self.inner.gettext(message) + END

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return START + self.inner.ngettext(singular, plural, n) + END

    def pgettext(self, context: str, message: str) -> str:
        return START + self.inner.pgettext(context, message) + END

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return START + self.inner.npgettext(context, singular, plural, n) + END


@pytest.fixture
def marked(monkeypatch):
    """Templates rendered with every translated message marked."""
    real = i18n.translations
    monkeypatch.setattr(i18n, "translations", lambda locale: Marked(real(locale)))
    emails.environment.cache_clear()
    yield
    monkeypatch.undo()
    emails.environment.cache_clear()


def _context(kind: str, **contact: object) -> dict:
    return email_context(
        score=9,
        score_urls=[(s, f"https://survey.example/s/t?score={s}") for s in range(11)],
        contact={"name": "Ada", **contact},
        **(
            {**flash_figures(), "we_did": ["Done"], "quotes": ["Fast and friendly."], "focus_themes": ["Pricing"]}
            if kind == "flash_results"
            else {}
        ),
    )


def _lines(text: str) -> list[str]:
    return text.split("\n")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(CUSTOMER_KINDS))
def test_every_plain_text_part_keeps_its_lines(marked, kind, locale):
    text = emails.render(f"email/{kind}.txt", _context(kind), locale)
    glued = [line for line in _lines(text) if CLAUSE_END.search(line)]
    assert glued == [], f"{kind} in {locale}: a sentence runs on into the next block"
    assert START + START not in text and END + START not in text  # two messages never touch
    plain = emails.render_email(kind, locale, "ada@example.com", _context(kind)).text
    catalog = i18n.translations(locale)
    lines = _lines(plain)
    greeting = catalog.gettext("Hello %(name)s,") % {"name": "\u2068Ada\u2069" if locale == "he" else "Ada"}
    assert lines[0] == greeting and lines[1] == "", f"{kind} in {locale}: the greeting is not a paragraph of its own"
    team = SIGN_OFF.get(kind, (None, "The %(product)s Customer Success team"))[1]
    signature = catalog.gettext(team) % {"product": "Acme Cloud"}
    assert signature in lines, f"{kind} in {locale}: the team's name is not a line of its own"
    if kind in SIGN_OFF:
        closing = catalog.gettext(SIGN_OFF[kind][0])
        assert lines[lines.index(signature) - 1] == closing, f"{kind} in {locale}: the sign-off is not two lines"
    assert lines[lines.index(signature) + 1 :][:2] == ["", "--"]  # then the footer, after a blank line


def test_the_sign_off_reads_as_two_lines():
    text = emails.render_email("preannouncement", "en", "ada@example.com", _context("preannouncement")).text
    assert "Thank you in advance,\nThe Acme Cloud Customer Success team\n" in text
    assert "Hello Ada,\n\nIn a few days" in text


def _nothing(kind: str, name: object) -> dict:
    """A context with every optional value missing: no name, no answers yet, no earlier wave."""
    context = _context(kind)
    context["contact"] = {"name": name}
    if kind == "flash_results":
        context.update(
            current={"nps": None, "responses": 0},
            previous=None,
            nps_direction="new",
            pillar_rows=[{"text": "Support?", "scale": "1-5", "score": None, "previous": None, "direction": "new"}],
            we_did=[],
            quotes=[],
            focus_themes=[],
            responded=False,
        )
    return context


@pytest.mark.parametrize("name", [None, ""])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(CUSTOMER_KINDS))
def test_a_missing_value_is_left_out_or_shown_as_a_dash(kind, locale, name):
    email = emails.render_email(kind, locale, "ada@example.com", _nothing(kind, name))
    for part in (email.subject, email.text, email.html):
        assert not MISSING_SHOWN.search(part), f"{kind} in {locale}: {MISSING_SHOWN.search(part)[0]!r}"
        assert ", ," not in part and " ," not in part.split("\n")[0]
    hello = i18n.translations(locale).gettext("Hello,")
    assert email.text.startswith(hello + "\n\n") and f"<p>{hello}</p>" in email.html
    if kind == "flash_results":
        assert f"{i18n.translations(locale).gettext('Net Promoter Score')}: – (" in email.text
        assert "– / 5" in email.text and "– / 5" in email.html


# --- through the wave's own steps -------------------------------------------------------------

OPEN = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
CLOSE = dt.datetime(2026, 12, 1, 18, 19, tzinfo=dt.UTC)  # already Dec 2, 3:19 in Tokyo


def _write_contacts(path: Path, rows: list[dict[str, str]]) -> Path:
    """A contacts file with the optional `account_country` and `timezone` columns."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=[*FIELDS, "account_country", "timezone"])
        writer.writeheader()
        writer.writerows({"account_country": "", "timezone": "", **row} for row in rows)
    return path


ROWS = [
    contact("C1", account="A1", locale="ja", account_country="JP"),  # the account's country: Tokyo
    contact("C2", account="A2", locale="en", account_country="JP", timezone="America/New_York"),  # their own
    contact("C3", account="A3", locale="", account_country=""),  # blanks: the wave's country
    contact("C4", account="A4", locale="he", account_country="IL"),
    contact("C5", account="A5", locale="nb", account_country="NO", role="", csm="", account_tier=""),
]


def _plan(engine, tmp_path) -> waves.WaveParams:
    path = _write_contacts(tmp_path / "contacts.csv", ROWS)
    params = wave_params(path, name="Q4", start=OPEN, close_at=CLOSE.isoformat(), frequency_days=0, share_quotes=True)
    params["country"] = "US"
    wave_id = pipeline.plan_wave(params)["wave_id"]
    pipeline.build_audience(wave_id)
    # The file must name everyone; a name can still be blank in the NPS DB (another source, erasure).
    storage.execute(engine, "UPDATE wave_audience SET name = '' WHERE contact_id = 'C3'")
    return waves.load_params(engine, wave_id)


def _send(wave_id: str, kind: str) -> None:
    for chunk in pipeline.prepare_mailing(wave_id, kind):
        pipeline.send_mailing_chunk(wave_id, kind, chunk)


def _parts(message) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    return text, message.get_body(preferencelist=("html",)).get_content()


def test_invitations_write_the_close_in_each_readers_zone(engine, smtp, tmp_path, monkeypatch):
    wave = _plan(engine, tmp_path)
    monkeypatch.setattr(storage, "utcnow", lambda: OPEN + dt.timedelta(minutes=5))
    _send(wave.wave_id, "invitation")
    sent = {m["To"]: _parts(m) for m in smtp.spool.messages() if m["X-NPS-Kind"] == "invitation"}
    expected = {
        "c1@a1.example": "2026/12/02 3:19 JST",  # Japan, from the account's country
        "c2@a2.example": "Dec 1, 2026, 1:19\u202fPM EST",  # their own zone beats the account's
        "c3@a3.example": "Dec 1, 2026, 1:19\u202fPM EST",  # nothing given: the wave's country (US)
        "c4@a4.example": "1 בדצמ׳ 2026, 20:19 שעון ישראל (חורף)",
        "c5@a5.example": "1. des. 2026, 19:19 CET",
    }
    for address, written in expected.items():
        text, html = sent[address]
        assert written in text and written in html, address
        assert "UTC" not in text and "UTC" not in html
    assert sent["c3@a3.example"][0].startswith("Hello,\n\n")  # a blank name and locale: English, no name


def test_one_click_unsubscribe_goes_out_as_a_plain_link_on_one_line(engine, smtp, tmp_path, monkeypatch):
    """Gmail and Yahoo read `List-Unsubscribe: <https://...>` as written (RFC 8058); the email
    package would fold the long link into an RFC 2047 encoded-word, which Python's own parser
    decodes back, so the bytes the SMTP server received are what is checked."""
    wave = _plan(engine, tmp_path)
    monkeypatch.setattr(storage, "utcnow", lambda: OPEN + dt.timedelta(minutes=5))
    _send(wave.wave_id, "invitation")
    raw = [path.read_bytes() for path in sorted(smtp.spool.folder.glob("*.eml"))]
    assert raw
    for data in raw:
        head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        lines = head.split(b"\n")
        link = next(line for line in lines if line.startswith(b"List-Unsubscribe: "))
        assert re.fullmatch(rb"List-Unsubscribe: <https?://[!-~]+>", link), link
        following = lines[lines.index(link) + 1]
        assert not following[:1].isspace(), "the link is not folded onto a second line"
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
        assert b"=?utf-8?" not in link


def test_no_customer_email_of_a_wave_shows_a_missing_value(engine, smtp, tmp_path, monkeypatch):
    """Blank optional columns in the contacts file, answers without comment or pillar answers:
    every customer email of the wave (invitation, reminder, band emails, flash results) reads clean."""
    wave = _plan(engine, tmp_path)
    monkeypatch.setattr(storage, "utcnow", lambda: OPEN + dt.timedelta(minutes=5))
    _send(wave.wave_id, "invitation")
    answered = OPEN + dt.timedelta(days=1)
    answers = [("C1", 10, None), ("C3", 9, ""), ("C4", 3, None), ("C5", 0, "   ")]
    rows = [
        {"wave_id": wave.wave_id, "contact_id": c, "score": s, "comment": text, "pillar_answers": "{}", "now": answered}
        for c, s, text in answers
    ]
    storage.execute(engine, storage.query("upsert_response"), rows)
    monkeypatch.setattr(storage, "utcnow", lambda: OPEN + dt.timedelta(days=3))
    _send(wave.wave_id, "reminder")
    pipeline.close_wave(wave.wave_id)
    pipeline.send_followups(wave.wave_id)
    monkeypatch.setattr(storage, "utcnow", lambda: CLOSE + dt.timedelta(days=3))
    _send(wave.wave_id, "flash_results")

    kinds = {}
    for message in smtp.spool.messages():
        text, html = _parts(message)
        kinds[message["X-NPS-Kind"]] = kinds.get(message["X-NPS-Kind"], 0) + 1
        for part in (message["Subject"], text, html):
            found = MISSING_SHOWN.search(part)
            assert not found, f"{message['X-NPS-Kind']} to {message['To']}: {found[0]!r} in {part!r}"
    assert kinds == {
        "invitation": 5,
        "reminder": 1,
        "followup_promoter": 2,
        "followup_detractor": 1,
        "followup_critical": 1,
        "flash_results": 5,
    }
    assert outbox.counts(engine, wave.wave_id)["flash_results"] == {"sent": 5}


def test_survey_pages_write_the_close_in_the_readers_zone(engine, tmp_path):
    from devkit.servers import SurveyServer

    path = _write_contacts(tmp_path / "contacts.csv", ROWS)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    params = wave_params(path, name="Open", start=start, close_at="2027-01-15T18:19:00+00:00", frequency_days=0)
    wave = waves.WaveParams.from_params(params)
    waves.plan_wave(engine, wave)
    audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, ["C1", "C2", "C3"], 0, wave.open_at)
    storage.execute(engine, "UPDATE wave_audience SET name = '' WHERE contact_id = 'C3'")
    waves.set_status(engine, wave.wave_id, "open")
    with SurveyServer(engine) as server:
        nameless = requests.get(
            f"{server.base_url}/s/{signed_links.sign('survey', wave.wave_id, 'C3')}", timeout=10
        ).text
        assert "<h1>Hello,</h1>" in nameless and not MISSING_SHOWN.search(nameless)
        for contact_id, written in (("C1", "2027/01/16 3:19 JST"), ("C2", "Jan 15, 2027, 1:19\u202fPM EST")):
            link = f"{server.base_url}/s/{signed_links.sign('survey', wave.wave_id, contact_id)}"
            form = requests.get(link, timeout=10).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            thanks = requests.post(link, data={"csrf_token": csrf, "score": "8"}, timeout=10)
            assert thanks.status_code == 200 and written in thanks.text, contact_id


# --- any contact, any figures ------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30).filter(
    lambda value: not MISSING_SHOWN.search(value)
)
_blank = st.sampled_from([None, "", "  ", float("nan")])
_figure = st.one_of(st.none(), st.floats(-100, 100, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(CUSTOMER_KINDS)),
    name=st.one_of(_blank, _text, st.sampled_from(["佐藤 花子", "דנה כהן", "Åse Ødegård"])),
    locale=st.one_of(_blank, st.sampled_from(["ja-JP", "zh_CN", "iw", "nb-NO", "en", "fr", "xx"])),
    timezone=st.one_of(_blank, st.sampled_from(["Asia/Tokyo", "Europe/Oslo", "Not/AZone"])),
    account_country=st.one_of(_blank, st.sampled_from(["JP", "IL", "NO", "ZZ", "us"])),
    nps=_figure,
    previous_nps=_figure,
    pillar=st.one_of(st.none(), st.floats(1, 5)),
    previous_pillar=st.one_of(st.none(), st.floats(1, 5)),
    quotes=st.lists(_text.filter(str.strip), max_size=2),
)
def test_any_contact_and_any_figures_read_clean(
    kind, name, locale, timezone, account_country, nps, previous_nps, pillar, previous_pillar, quotes
):
    from include.nps.wave import mailings

    wave = waves.WaveParams.from_params(wave_params(Path("c.csv"), start=OPEN, close_at=CLOSE.isoformat()))
    raw = {"contact_id": "C1", "name": name, "locale": locale, "timezone": timezone, "account_country": account_country}
    reader = mailings.reader(storage.records(pd.DataFrame([raw]))[0], wave)
    context = {**_context(kind), "wave": mailings.wave_context(wave), "contact": reader}
    if kind == "flash_results":
        context.update(current={"nps": nps, "responses": 3}, previous={"nps": previous_nps}, quotes=quotes)
        context["pillar_rows"][0].update(score=pillar, previous=previous_pillar)
    email = emails.render_email(kind, reader["locale"], "ada@example.com", context)
    for part in (email.subject, email.text, email.html):
        assert not MISSING_SHOWN.search(part), MISSING_SHOWN.search(part)[0]
    assert not [line for line in email.text.split("\n") if CLAUSE_END.search(line)]
    if not (isinstance(name, str) and name.strip()):
        hello = i18n.translations(i18n.normalize_locale(locale)).gettext("Hello,")
        assert email.text.startswith(hello + "\n"), "a blank name greets without one"
    if kind in ("invitation", "reminder"):
        assert i18n.format_datetime(wave.close_at, i18n.normalize_locale(locale), reader["zone"]) in email.text
