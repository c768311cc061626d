"""The flash-results chart: drawn in every language with glyphs that exist, Hebrew right to left,
sent inline in the email's HTML part, over the right waves of the program."""

from __future__ import annotations

import datetime as dt
import struct
import warnings

import pytest

from include.nps.core import charts, emails, i18n, storage
from include.nps.wave import audience, stats, waves
from tests.factories import contact, email_context, flash_figures, planned_wave, write_csv

TREND = [charts.WavePoint("2026-Q2", -4.0), charts.WavePoint("2026-Q3", 3.0), charts.WavePoint("2026-Q4", 12.5)]
SPLIT = {"promoters": 20, "passives": 17, "detractors": 16}
LABEL = {"en": "Promoters", "ja": "推奨者", "zh": "推荐者", "he": "ממליצים", "nb": "Promotører"}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


@pytest.mark.parametrize("locale", sorted(i18n.SUPPORTED_LOCALES))
def test_the_chart_is_drawn_in_the_readers_language_with_no_missing_glyph(locale):
    assert charts.labels(locale)["promoters"] == LABEL[locale]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        png = charts.flash_chart(TREND, SPLIT, locale)
    assert png_size(png) == (charts.WIDTH_PX * charts.SCALE, charts.HEIGHT_PX * charts.SCALE)


def test_hebrew_is_reordered_for_display_and_other_languages_are_not():
    assert charts.visual("ממליצים 38%", "he") == "38% םיצילממ"
    assert charts.visual("推奨者 38%", "ja") == "推奨者 38%"


def test_the_flash_email_shows_the_chart_inline_in_its_html_part():
    context = email_context(chart_cid=charts.CONTENT_ID, **flash_figures())
    email = emails.render_email("flash_results", "ja", "ada@example.com", context)
    png = charts.flash_chart(TREND, SPLIT, "ja")
    email.inline_images = [emails.Attachment("nps-chart.png", png, "image/png", charts.CONTENT_ID)]
    mime = emails.build_mime(email, "cs@vendor.example", "<1@vendor.example>")

    plain, related = mime.get_payload()
    assert plain.get_content_type() == "text/plain" and "cid:" not in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html, image = related.get_payload()
    assert f'src="cid:{charts.CONTENT_ID}"' in html.get_content()
    assert image.get_content_type() == "image/png" and image["Content-ID"] == f"<{charts.CONTENT_ID}>"
    assert image.get_content() == png


def test_the_trend_covers_the_programs_waves_up_to_this_one_oldest_first(engine, tmp_path):
    csv_path = write_csv(tmp_path / "c.csv", [contact(f"C{i}") for i in range(1, 5)])
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    first = planned_wave(engine, csv_path, name="Q1", start=start)
    second = planned_wave(engine, csv_path, name="Q2", start=start + dt.timedelta(days=90))
    later = planned_wave(engine, csv_path, name="Q3", start=start + dt.timedelta(days=180))
    other = planned_wave(engine, csv_path, name="Q2", program="other", start=start + dt.timedelta(days=90))
    audience.load_contacts(engine, first.wave_id, csv_path)
    answers = [(first, [10, 9, 3, 7]), (second, [10, 10, 9, 0]), (later, [0, 0, 0, 0]), (other, [0, 0, 0, 0])]
    for wave, scores in answers:
        waves.set_status(engine, wave.wave_id, "open")
        rows = [
            {"wave_id": wave.wave_id, "contact_id": f"C{i}", "score": s, "comment": None, "pillar_answers": "{}"}
            for i, s in enumerate(scores, start=1)
        ]
        storage.execute(engine, storage.query("upsert_response"), [{**r, "now": wave.open_at} for r in rows])
    assert stats.nps_trend(engine, second.wave_id) == [("Q1", 25.0), ("Q2", 50.0)]
    assert stats.nps_trend(engine, second.wave_id, last=1) == [("Q2", 50.0)]
