"""What the flash results say beyond the figures: anonymised quotes, and "you told us, we did".
Then two consecutive waves of one program through the pipeline's own steps: the second wave's
flash emails show the right directions and the first wave's completed action items."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pandas as pd
import pytest

from include.nps import pipeline
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import comment_themes, flash_content, waves
from tests.factories import contact, wave_params, write_csv

OPEN_1 = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)
OPEN_2 = dt.datetime(2026, 9, 1, 9, tzinfo=dt.UTC)
PROMOTER_COMMENT = "Setup took a day and Person C07 (c07@a3.example, +1 555 010 9999) was great"


def test_a_quote_reveals_no_address_number_or_name():
    quote = flash_content.anonymise(PROMOTER_COMMENT + " see https://acme.example/x", ["person c07", "A1 Inc"])
    assert quote == "Setup took a day and […] ([…], […]) was great see […]"


def test_quotes_are_chosen_per_language_from_promoters_only():
    answers = pd.DataFrame(
        {
            "score": [10, 9, 3, 10, 10, 10],
            "comment": ["Great support team, thanks!", "Very easy to use every day", "Too slow for us, sorry",
                        "short", "とても使いやすいサービスです。助かっています", "Reliable and quick answers too"],
            "locale": ["en", "en-US", "en", "en", "ja-JP", "en"],
            "answered_at": pd.to_datetime(["2026-06-02", "2026-06-03", "2026-06-02", "2026-06-02", "2026-06-04",
                                           "2026-06-05"]),
        }
    )  # fmt: skip
    quotes = flash_content.quotes_by_locale(answers, [])
    assert quotes == {
        "en": ["Great support team, thanks!", "Reliable and quick answers too"],  # 10s first, then earliest
        "ja": ["とても使いやすいサービスです。助かっています"],
    }


def test_the_themes_to_work_on_are_the_three_most_complained_about_by_detractors():
    def part(contact: str, score: int, kind: str, theme: str | None) -> dict:
        return {
            "contact_id": contact,
            "account_name": "A",
            "score": score,
            "locale": "en",
            "comment": "x",
            "kind": kind,
            "theme": theme,
            "matched": [],
        }

    parts = [
        part("C1", 2, "con", "support"), part("C2", 3, "con", "support"), part("C3", 1, "con", "support"),
        part("C1", 2, "con", "pricing"), part("C2", 3, "con", "pricing"),
        part("C4", 4, "con", "not-in-the-file"), part("C5", 4, "con", "not-in-the-file"),
        part("C4", 4, "suggestion", "reporting"), part("C5", 5, "suggestion", "reporting"),  # ideas, not complaints
        part("C6", 7, "con", "mobile"), part("C7", 8, "con", "mobile"),  # passives' cons
        part("C6", 5, "con", "onboarding"), part("C7", 0, "con", "usability"),
    ]  # fmt: skip
    themes = comment_themes.load_themes()
    focus = flash_content.focus_themes(parts, themes, wave_detractors=7)
    assert [theme.id for theme in focus] == ["support", "pricing", "usability"]  # ties: the file's order
    assert [theme.label_in("nb") for theme in focus] == ["Kundestøtte", "Pris og verdi", "Brukervennlighet"]


def test_a_done_item_needs_a_note_in_a_supported_language(engine, tmp_path):
    with pytest.raises(ValueError, match="public_note needs a text"):
        flash_content.complete_action_item(engine, "w", "k", {"xx": "Hello"})
    with pytest.raises(ValueError, match="public_note needs a text"):
        flash_content.complete_action_item(engine, "w", "k", {"en": "  "})


def _run_wave(engine, csv_path, name: str, opened: dt.datetime, scores: dict[str, int], comments: dict[str, str]):
    """A wave through the pipeline's steps: audience, invitations sent, answers, close."""
    params = wave_params(csv_path, name=name, start=opened, frequency_days=0, share_quotes=True)
    params["cs_ops_recipients"] = ["csops@vendor.example"]
    wave_id = pipeline.plan_wave(params)["wave_id"]
    pipeline.build_audience(wave_id)
    wave = waves.load_params(engine, wave_id)
    recipients = storage.fetch_all(engine, "SELECT contact_id, email FROM wave_audience WHERE wave_id = :w", w=wave_id)
    outbox.enqueue(engine, wave_id, "invitation", [(r["contact_id"], r["email"]) for r in recipients])
    storage.execute(
        engine, "UPDATE outbox SET status = 'sent', sent_at = :t WHERE wave_id = :w", {"t": opened, "w": wave_id}
    )
    waves.set_status(engine, wave_id, "open")
    answered = opened + dt.timedelta(days=1)
    rows = [
        {"wave_id": wave_id, "contact_id": c, "score": s, "comment": comments.get(c), "pillar_answers": "{}"}
        for c, s in scores.items()
    ]
    storage.execute(engine, storage.query("upsert_response"), [{**r, "now": answered} for r in rows])
    pipeline.close_wave(wave_id)
    return wave


def test_the_second_waves_flash_shows_its_directions_and_the_first_waves_completed_items(
    engine, smtp, tmp_path, monkeypatch
):
    rows = [contact(f"C{i:02d}", account=f"A{i % 4}") for i in range(1, 41)]
    for row in rows[::5]:
        row["locale"] = "ja"
    csv_path = write_csv(tmp_path / "contacts.csv", rows)
    first_scores = {f"C{i:02d}": (3 if i % 2 else 8) for i in range(1, 41)}  # 20 detractors, 20 passives: -50
    first = _run_wave(engine, csv_path, "Q2", OPEN_1, first_scores, {"C01": "Support is far too slow"})
    pipeline.run_retrospective(first.wave_id)
    items = storage.fetch_all(engine, "SELECT item_key FROM action_items WHERE wave_id = :w", w=first.wave_id)
    assert "review-cons" in {i["item_key"] for i in items}
    notes = ["--note", "en=Support now answers within 4 hours", "--note", "ja=サポートは4時間以内に回答します"]
    flash_content.main([first.wave_id, "review-cons", *notes])  # what CS ops run once it is done
    with pytest.raises(SystemExit, match="no action item 'nope'"):
        flash_content.main([first.wave_id, "nope", "--note", "en=Done"])

    second_scores = {f"C{i:02d}": (10 if i % 4 else 7) for i in range(1, 41)}  # 30 promoters, 10 passives: +75
    comments = {"C02": PROMOTER_COMMENT, "C06": "サポートがとても速くなりました。ありがとうございます。"}
    second = _run_wave(engine, csv_path, "Q3", OPEN_2, second_scores, comments)
    monkeypatch.setattr(storage, "utcnow", lambda: second.close_at + dt.timedelta(days=3))
    for chunk in pipeline.prepare_mailing(second.wave_id, "flash_results"):
        pipeline.send_mailing_chunk(second.wave_id, "flash_results", chunk)

    flash = {m["To"]: m for m in smtp.spool.messages() if m["X-NPS-Kind"] == "flash_results"}
    assert len(flash) == 40
    english, japanese = (_text(flash[to]) for to in ("c02@a2.example", "c01@a1.example"))
    assert "Net Promoter Score: +75 (up; -50 last time)" in english
    assert "What happens next: our team is reviewing every comment now." in english  # no detractor complained
    assert "You told us, we did:\n- Support now answers within 4 hours" in english
    assert "Setup took a day and […] ([…], […]) was great" in english and "C07" not in english
    assert "サポートは4時間以内に回答します" in japanese and "上昇" in japanese
    assert "サポートがとても速くなりました。ありがとうございます。" in japanese
    assert "Setup took a day" not in japanese  # quotes stay in the reader's language


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def test_what_we_will_do_next_names_the_themes_detractors_complained_about_most(engine, smtp, tmp_path, monkeypatch):
    rows = [contact(f"C{i:02d}", account=f"A{i % 3}") for i in range(1, 13)]
    rows[1]["locale"] = "he"
    csv_path = write_csv(tmp_path / "contacts.csv", rows)
    scores = {f"C{i:02d}": (i if i <= 6 else 9) for i in range(1, 13)}  # C01-C06 detractors
    scores["C07"] = 7
    comments = {
        "C01": "Far too expensive for what we get",
        "C03": "The price went up again",
        "C05": "Support never answers our tickets",
        "C06": "Reports should export to Excel",  # a detractor's suggestion: not a complaint
        "C07": "The mobile app is slow and annoying",  # a passive's con: not a detractor's
    }
    wave = _run_wave(engine, csv_path, "Q4", OPEN_1, scores, comments)
    monkeypatch.setattr(storage, "utcnow", lambda: wave.close_at + dt.timedelta(days=3))
    for chunk in pipeline.prepare_mailing(wave.wave_id, "flash_results"):
        pipeline.send_mailing_chunk(wave.wave_id, "flash_results", chunk)

    flash = {m["To"]: m for m in smtp.spool.messages() if m["X-NPS-Kind"] == "flash_results"}
    english, hebrew = _text(flash["c01@a1.example"]), _text(flash["c02@a2.example"])
    assert (
        "What we will do next:\nOur teams will work first on what concerned you most:\n"
        "- Pricing and value\n- Our support\n"
    ) in english
    assert "What happens next" not in english
    assert "- מחיר ותמורה\n- התמיכה שלנו\n" in hebrew
    html = flash["c02@a2.example"].get_body(preferencelist=("html",)).get_content()
    assert '<li style="margin:0 0 6px;">מחיר ותמורה</li>' in html


class _Table(HTMLParser):
    """The text of each cell of each row of an HTML document's tables."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _figure_rows(html: str) -> list[list[str]]:
    table = _Table()
    table.feed(html)
    return [row for row in table.rows if len(row) == 3]


@pytest.mark.parametrize("locale", ["en", "ja", "zh", "he", "nb"])
def test_since_the_last_survey_shows_the_change_not_the_previous_figure(locale):
    from include.nps.core import emails, i18n
    from tests.factories import email_context, flash_figures

    figures = flash_figures()
    figures["current"]["nps"], figures["previous"]["nps"] = 45.0, 4.0  # +41 since the last survey
    figures["pillar_rows"][0].update(score=4.2, previous=3.9)  # +0.3
    html = emails.render_email("flash_results", locale, "ada@example.com", email_context(**figures)).html
    _, nps, pillar = _figure_rows(html)
    up, stable = (i18n.translations(locale).gettext(word) for word in ("up", "stable"))
    assert nps[1:] == ["+45", f"▲ {up} (+41)"], locale
    assert pillar[1] == f"{i18n.format_decimal(4.2, locale)} / 5"
    assert pillar[2] == f"▬ {stable} (+{i18n.format_decimal(0.3, locale)})", locale
    figures["pillar_rows"][0].update(score=4.35, previous=4.05)  # shown 4.4 and 4.0 (half to even): +0.4
    figures["current"]["nps"], figures["previous"]["nps"] = -12.4, 5.4  # shown -12 and +5: -17
    html = emails.render_email("flash_results", locale, "ada@example.com", email_context(**figures)).html
    _, nps, pillar = _figure_rows(html)
    assert nps[2].endswith("(-17)") and pillar[2].endswith(f"(+{i18n.format_decimal(0.4, locale)})"), locale


def test_the_same_promoter_comment_is_quoted_once():
    answers = pd.DataFrame(
        {
            "score": [10, 10, 9, 9],
            "comment": ["Great support team, thanks!", "great  support team — thanks", "GREAT SUPPORT TEAM, THANKS",
                        "Reliable and quick answers too"],
            "locale": ["en", "en", "en", "en"],
            "answered_at": pd.to_datetime(["2026-06-02", "2026-06-03", "2026-06-04", "2026-06-05"]),
        }
    )  # fmt: skip
    assert flash_content.quotes_by_locale(answers, []) == {
        "en": ["Great support team, thanks!", "Reliable and quick answers too"]
    }
    assert flash_content.same_words("Ｇreat　support!") == flash_content.same_words("great support")  # NFKC


def test_a_done_items_blank_note_gives_way_to_another_language():
    item = {"public_note": {"ja": "  ", "en": " Support now answers within 4 hours "}}
    assert flash_content.note_in(item, "ja") == "Support now answers within 4 hours"
    assert flash_content.note_in({"public_note": {"nb": "Raskere svar"}}, "he") == "Raskere svar"
