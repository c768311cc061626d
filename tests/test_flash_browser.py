"""The flash-results email as a mail client shows it: its HTML part rendered in Debian's Chromium
in every language, for a respondent and for a non-respondent, at a mail client's 600 px width.

Pictures are written to `var/screenshots/flash/`.
"""

from __future__ import annotations

import base64

import pytest

from include.nps.core import charts, emails, i18n
from include.nps.core.storage import PROJECT_ROOT
from include.nps.wave import comment_themes
from tests.factories import email_context, flash_figures
from tests.test_charts import SPLIT, TREND

pytestmark = pytest.mark.browser
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "flash"
MAIL_WIDTH = 600
# What each language writes for the direction "up" and the pillar's question.
UP = {"en": "up", "ja": "上昇", "zh": "上升", "he": "עלייה", "nb": "opp"}
PILLAR = {"en": "Support?", "ja": "サポート?", "zh": "支持?", "he": "תמיכה?", "nb": "Støtte?"}
# What CS ops wrote of a done item, and a promoter's quote, in each language.
WE_DID = {
    "en": "Support now answers within 4 hours",
    "ja": "サポートは4時間以内に回答します",
    "zh": "客服现在会在4小时内回复",
    "he": "התמיכה עונה עכשיו תוך 4 שעות",
    "nb": "Kundestøtten svarer nå innen 4 timer",
}
QUOTE = {
    "en": "Setup took a day and the team was great",
    "ja": "導入は1日で終わり、チームの対応も素晴らしかったです",
    "zh": "一天就完成了部署，团队非常棒",
    "he": "ההטמעה לקחה יום אחד והצוות היה מצוין",
    "nb": "Oppsettet tok en dag, og teamet var supert",
}
FOCUS = ("pricing", "support")


def _flash(locale: str, responded: bool) -> emails.RenderedEmail:
    context = email_context(
        chart_cid=charts.CONTENT_ID,
        we_did=[WE_DID[locale]],
        quotes=[QUOTE[locale]],
        focus_themes=_focus(locale),
        **flash_figures(responded),
    )
    return emails.render_email("flash_results", locale, "ada@example.com", context)


def _focus(locale: str) -> list[str]:
    themes = comment_themes.load_themes()
    return [themes.get(theme_id).label_in(locale) for theme_id in FOCUS]


def _as_a_mail_client_shows_it(html: str, locale: str) -> str:
    """The inline chart (a cid: part in the email) given to the browser as a data: URL."""
    png = base64.b64encode(charts.flash_chart(TREND, SPLIT, locale)).decode()
    return html.replace(f"cid:{charts.CONTENT_ID}", f"data:image/png;base64,{png}")


@pytest.mark.parametrize("locale", sorted(i18n.SUPPORTED_LOCALES))
def test_the_flash_email_reads_right_in_every_language(browser, locale):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": MAIL_WIDTH, "height": 900})
    texts = {}
    for responded in (True, False):
        page.set_content(_as_a_mail_client_shows_it(_flash(locale, responded).html, locale))
        body = page.inner_text("body")
        texts[responded] = body
        assert "+12" in body and "Ada" in body and PILLAR[locale] in body
        assert UP[locale] in body, f"{locale}: the NPS direction is not written in the reader's language"
        assert WE_DID[locale] in body and QUOTE[locale] in body and all(label in body for label in _focus(locale))
        direction = page.evaluate("getComputedStyle(document.querySelector('[dir]')).direction")
        assert direction == i18n.direction(locale)
        chart = page.locator("img").evaluate("i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]")
        assert chart[0] and chart[1] == charts.WIDTH_PX * charts.SCALE and chart[2] <= charts.WIDTH_PX
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= MAIL_WIDTH, f"{locale}: the email is {width}px wide, wider than a mail client's pane"
        who = "respondent" if responded else "non-respondent"
        page.screenshot(path=SCREENSHOTS / f"flash-{locale}-{who}.png", full_page=True)
    assert texts[True] != texts[False]  # thanks for answering vs an invitation to answer next time
    page.close()


# Where a piece of text ends up on screen: the left and right edges of `word` and of the character after it.
_EDGES = """([root, word]) => {
    const walker = document.createTreeWalker(document.querySelector(root), NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = node.data.indexOf(word);
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(node, at); range.setEnd(node, at + word.length - 1);
        const body = range.getBoundingClientRect();
        range.setStart(node, at + word.length - 1); range.setEnd(node, at + word.length);
        const last = range.getBoundingClientRect();
        return [body.left, body.right, last.left, last.right];
    }
    return null;
}"""


def test_english_customer_text_keeps_its_punctuation_in_the_hebrew_email(browser):
    """An English quote and an untranslated pillar question inside the right-to-left email: the full
    stop and the question mark stay at the end of their own sentence (right of the last word)."""
    figures = flash_figures()
    figures["pillar_rows"][0] = {**figures["pillar_rows"][0], "text": "Are the docs clear?", "translations": {}}
    context = email_context(quotes=["Setup took a day and the team was great."], **figures)
    html = emails.render_email("flash_results", "he", "ada@example.com", context).html
    page = browser.new_page(viewport={"width": MAIL_WIDTH, "height": 900})

    def sides(document: str) -> list[bool]:
        page.set_content(document)
        stop = page.evaluate(_EDGES, ["blockquote", "great."])
        mark = page.evaluate(_EDGES, ["table", "clear?"])
        return [stop[2] >= stop[1] - 1, mark[2] >= mark[1] - 1]  # the mark is right of its word

    assert sides(html) == [True, True]
    unisolated = html.replace("<bdi>", "").replace("</bdi>", "")
    assert sides(unisolated) == [False, False]  # what the reader saw before: the marks on the wrong side
    page.close()
