"""The survey form in a real browser (Debian's Chromium, driven by Playwright), reached through
the links of invitations delivered to a real SMTP server on loopback.

Screenshots of the form in every language, on a desktop and on a phone, are written to
`var/screenshots/survey/`.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from devkit.servers import SurveyServer
from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import audience, mailings, waves
from include.nps.web.survey_form import FormSettings
from tests.factories import contact, planned_wave, write_csv

pytestmark = pytest.mark.browser
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "survey"
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
LOCALES = {"en": "C-EN", "ja": "C-JA", "zh": "C-ZH", "he": "C-HE", "nb": "C-NB"}
PILLARS = [
    {
        "id": "support",
        "text": "How satisfied are you with our support?",
        "scale": "1-5",
        "translations": {
            "ja": "サポートにどの程度満足していますか?",
            "zh": "您对我们的支持服务满意吗?",
            "he": "עד כמה אתם מרוצים מהתמיכה שלנו?",
            "nb": "Hvor fornøyd er du med kundestøtten vår?",
        },
    }
]


@pytest.fixture
def invited(engine, smtp, tmp_path, monkeypatch):
    """An open wave whose invitations, one per language, were delivered by SMTP; the form runs."""
    rows = [contact(cid, name=f"Kunde {cid}", locale=locale) for locale, cid in LOCALES.items()]
    path = write_csv(tmp_path / "contacts.csv", [*rows, contact("C-OUT", name="Leaving Person")])
    wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), pillar_questions=PILLARS)
    audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, [*LOCALES.values(), "C-OUT"], 90, wave.open_at)
    waves.set_status(engine, wave.wave_id, "open")
    with SurveyServer(engine, FormSettings()) as server:
        monkeypatch.setenv("NPS_SURVEY_BASE_URL", server.base_url)
        recipients = audience.audience_frame(engine, wave.wave_id)[["contact_id", "email", "name", "locale"]]
        with SmtpTransport() as transport:
            mailings.send_to_contacts(engine, wave, "invitation", recipients.to_dict("records"), transport)
        yield Invited(engine, wave, smtp.spool)


class Invited:
    def __init__(self, engine, wave, spool) -> None:
        self.engine, self.wave, self.spool = engine, wave, spool

    def email(self, contact_id: str):
        address = storage.fetch_one(self.engine, "SELECT email FROM contacts WHERE contact_id = :c", c=contact_id)
        return next(m for m in self.spool.messages() if m["To"] == address["email"])

    def link(self, contact_id: str, score: int | None = None) -> str:
        """The link a customer clicks in the HTML part of their invitation."""
        html = self.email(contact_id).get_body(preferencelist=("html",)).get_content()
        links = re.findall(r'href="([^"]+/s/[^"?]+)(\?score=\d+)?"', html)
        wanted = f"?score={score}" if score is not None else ""
        return next(base + query for base, query in links if query == wanted)

    def unsubscribe_link(self, contact_id: str) -> str:
        html = self.email(contact_id).get_body(preferencelist=("html",)).get_content()
        return re.search(r'href="([^"]+/u/[^"]+)"', html).group(1)

    def response(self, contact_id: str) -> dict | None:
        return storage.fetch_one(
            self.engine, "SELECT score, comment, revision FROM responses WHERE contact_id = :c", c=contact_id
        )


@pytest.fixture
def page_factory(browser):
    contexts = []

    def open_page(device: dict = DESKTOP, locale: str = "en-US"):
        context = browser.new_context(locale=locale, **device)
        contexts.append(context)
        page = context.new_page()
        page.policy_violations = []
        page.on("console", lambda msg: "Content Security Policy" in msg.text and page.policy_violations.append(msg))
        return page

    yield open_page
    for context in contexts:
        context.close()


def test_a_score_clicked_in_the_email_then_a_japanese_comment_then_an_edit_in_hebrew(invited, page_factory):
    page = page_factory()
    page.goto(invited.link("C-JA", score=3))
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.get_by_role("radio", name="3", exact=True).first.is_checked()
    assert invited.response("C-JA") is None  # opening the link recorded nothing
    page.locator("#comment").fill("ダッシュボードの読み込みが遅いです。")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/thanks$"))
    assert invited.response("C-JA") == {"score": 3, "comment": "ダッシュボードの読み込みが遅いです。", "revision": 1}

    page.locator("a[href$='" + invited.link("C-JA").rsplit("/", 1)[1] + "']").click()  # "change my answer"
    assert page.locator("#comment").input_value() == "ダッシュボードの読み込みが遅いです。"
    page.get_by_role("radio", name="8", exact=True).first.check()
    page.locator("#comment").fill("השירות השתפר מאוד, תודה!")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/thanks$"))
    assert invited.response("C-JA") == {"score": 8, "comment": "השירות השתפר מאוד, תודה!", "revision": 2}
    history = storage.fetch_all(invited.engine, "SELECT score FROM response_history WHERE contact_id = 'C-JA'")
    assert [h["score"] for h in history] == [3, 8]
    assert page.policy_violations == []


def test_hebrew_reads_right_to_left_and_keeps_its_answer(invited, page_factory):
    page = page_factory()
    page.goto(invited.link("C-HE", score=1))
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    page.locator("#comment").fill("הממשק מסורבל ואיטי")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/thanks$"))
    assert invited.response("C-HE")["comment"] == "הממשק מסורבל ואיטי"


def test_keyboard_only_answer_with_labelled_controls(invited, page_factory):
    page = page_factory()
    page.goto(invited.link("C-EN"))
    question = page.get_by_role("group", name="How likely are you to recommend Acme Cloud to a friend or colleague?")
    assert question.get_by_role("radio").count() == 11
    assert page.get_by_label("What is the main reason for your score? (optional)").is_visible()
    page.keyboard.press("Tab")  # into the score group
    page.keyboard.press("ArrowRight")  # radios move with the arrow keys: 0 -> 1 ...
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    assert page.get_by_role("radio", name="9", exact=True).first.is_checked()
    page.keyboard.press("Tab")
    page.keyboard.type("Fast and friendly.")
    page.keyboard.press("Tab")  # the support question
    page.keyboard.press("Tab")  # the send button
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/thanks$"))
    assert invited.response("C-EN") == {"score": 9, "comment": "Fast and friendly.", "revision": 1}


def test_on_a_phone_every_score_is_a_large_target_and_nothing_scrolls_sideways(invited, page_factory):
    page = page_factory(PHONE)
    page.goto(invited.link("C-EN", score=7))
    boxes = [label.bounding_box() for label in page.locator(".scale label").all()[:11]]
    assert min(b["width"] for b in boxes) >= 44 and min(b["height"] for b in boxes) >= 44
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    button = page.locator("button[type=submit]")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") != "rgba(0, 0, 0, 0)"  # the stylesheet loaded


def test_unsubscribe_from_the_email_link(invited, page_factory):
    page = page_factory()
    page.goto(invited.unsubscribe_link("C-OUT"))
    assert page.get_by_role("heading", name="Unsubscribe from customer surveys").is_visible()
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    row = storage.fetch_one(invited.engine, "SELECT opted_out_at FROM contacts WHERE contact_id = 'C-OUT'")
    assert row["opted_out_at"] is not None


def test_a_closed_wave_and_a_tampered_link(invited, page_factory):
    page = page_factory()
    waves.set_status(invited.engine, invited.wave.wave_id, "closed")
    answer = page.goto(invited.link("C-NB", score=9))
    assert answer.status == 410 and page.locator("html").get_attribute("lang") == "nb"
    tampered = invited.link("C-EN").replace("/s/", "/s/x")
    answer = page.goto(tampered)
    assert answer.status == 404 and page.get_by_role("heading", name="This link is not valid").is_visible()
    assert invited.response("C-NB") is None and invited.response("C-EN") is None


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_screenshots_of_the_form_in_every_language(invited, page_factory, device):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for locale, contact_id in LOCALES.items():
        page = page_factory(DESKTOP if device == "desktop" else PHONE)
        page.goto(invited.link(contact_id, score=8))
        assert page.locator("html").get_attribute("lang") == locale
        page.screenshot(path=SCREENSHOTS / f"form-{locale}-{device}.png", full_page=True)
        assert page.policy_violations == []
    assert len(list(SCREENSHOTS.glob(f"form-*-{device}.png"))) == len(LOCALES)
