"""Customer emails from stencils (`email_stencils`): each template rendered once per variant, each
reader's name and links put in its holes. Whatever the name (any script, markup, quotes, emoji, none
at all) and whatever the kind and language, the email is the one the templates give rendered in
full; a template that does more with a name than print it is rendered in full for every reader."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import ChoiceLoader, DictLoader

from include.nps.core import emails, i18n
from include.nps.core.email_stencils import Personal, Stencils
from include.nps.delivery.outbox import CUSTOMER_KINDS
from include.nps.wave import mailings
from tests.factories import flash_figures

LOCALES = ("en", "ja", "zh", "he", "nb")
NAMES = [
    "Ada",
    "山田 太郎",
    "דוד כהן",
    "王小明",
    "Åse Øvergård",
    'Zoë <b>O\'Brien</b> & "Sons" 🎉',
    "{{ 7 * 7 }} {% raw %}",
    "%(name)s %s {0}",
    "\ue000 0T&q \ue001",  # text that looks like a stencil's hole
    "a" * 300,
    None,
]
WAVE = {
    "wave_id": "acme:2026-Q1",
    "name": "2026 Q1",
    "product": "Acme Cloud",
    "open_at": dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
    "close_at": dt.datetime(2026, 3, 16, 9, tzinfo=dt.UTC),
    "pillars": [{"id": "support", "text": "Support?", "scale": "1-5"}],
}


def _links(contact_id: str) -> dict:
    survey = f"https://survey.example/s/{contact_id}.sig&x=<1>"
    return {
        "survey_url": survey,
        "score_urls": [(score, f"{survey}?score={score}") for score in range(11)],
        "unsubscribe_url": f"https://survey.example/u/{contact_id}",
    }


def _extra(kind: str, n: int) -> dict:
    if kind == "flash_results":
        return {**flash_figures(responded=n % 2 == 0), "we_did": ["Done"], "quotes": ["Fast."], "focus_themes": []}
    return {"score": n % 11} if kind in CUSTOMER_KINDS else {}


def _contexts(kind: str, locale: str, n: int, name: str | None) -> tuple[dict, dict]:
    """The context of reader `n` as mailings builds it (personal values marked), and as it is."""
    contact = {"contact_id": f"C{n}", "email": f"c{n}@a1.example", "name": name, "locale": locale, "zone": "Asia/Tokyo"}
    links = _links(contact["contact_id"])
    marked = {"wave": WAVE, "contact": mailings._personal(contact), **mailings._personal_links(links)}
    plain = {"wave": WAVE, "contact": contact, **links}
    return {**marked, **_extra(kind, n)}, {**plain, **_extra(kind, n)}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(CUSTOMER_KINDS))
def test_every_customer_email_from_its_stencil_is_the_email_rendered_in_full(kind, locale):
    stencils = Stencils()
    for n, name in enumerate(NAMES * 3):
        marked, plain = _contexts(kind, locale, n, name)
        email = stencils.render_email(kind, locale, f"c{n}@a1.example", marked)
        expected = emails.render_email(kind, locale, f"c{n}@a1.example", plain)
        assert (email.subject, email.text, email.html) == (expected.subject, expected.text, expected.html), name
    assert stencils.counts["refused"] == 0
    assert stencils.counts["stencil"] > stencils.counts["made"]  # most readers had a stencil filled


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40), max_size=6),
    locale=st.sampled_from(LOCALES),
)
def test_any_name_fills_the_invitations_stencil_as_the_template_renders_it(names, locale):
    stencils = Stencils()
    for n, name in enumerate(["Ada", *names]):
        marked, plain = _contexts("invitation", locale, n, name)
        email = stencils.render_email("invitation", locale, "c@a1.example", marked)
        expected = emails.render_email("invitation", locale, "c@a1.example", plain)
        assert (email.subject, email.text, email.html) == (expected.subject, expected.text, expected.html)


@pytest.mark.parametrize(
    "greeting",
    [
        "{{ contact.name | upper }}",
        "{{ contact.name | trim }}",
        "{{ contact.name | safe }}",
        "{{ contact.name | replace('a', 'b') }}",
        "{{ contact.name | truncate(12) }}",
        "{{ contact.name | length }}",
        "{{ contact.name.split()[0] }}",
        "{% if contact.name == 'Ada' %}dear Ada{% endif %}",
        "{{ contact.name[:3] }}",
        "{{ '%-20s' | format(contact.name) }}",
        "{{ contact.name | urlencode }}",
    ],
)
def test_a_template_that_does_more_with_a_name_than_print_it_is_rendered_in_full(greeting):
    stencils = _custom_emails_match_their_full_rendering(greeting)
    assert stencils.counts["refused"] == 1 and stencils.counts["stencil"] == 0


def test_a_name_printed_next_to_text_still_fills_a_stencil():
    stencils = _custom_emails_match_their_full_rendering("{{ contact.name ~ '!' }} {{ contact.name | e }}")
    assert stencils.counts["refused"] == 0 and stencils.counts["stencil"] == 4


def _custom_emails_match_their_full_rendering(greeting: str) -> Stencils:
    templates = {
        "email/custom.subject.txt": "Hi " + greeting,
        "email/custom.txt": "Hello " + greeting + "\n{{ survey_url }}\n",
        "email/custom.html": "<p>Hello " + greeting + ' <a href="{{ survey_url }}">go</a></p>',
    }

    def render(path: str, context: dict, locale: str) -> str:
        env = emails.environment(i18n.normalize_locale(locale)).overlay(
            loader=ChoiceLoader([DictLoader(templates), emails.environment(locale).loader])
        )
        return env.get_template(path).render(**context)

    stencils = Stencils(render)
    for n, name in enumerate(["Ada", "  Bob  ", "Zoë <b>&</b> a", "ada", "Ada"]):
        marked, plain = _contexts("custom", "en", n, name)
        email = stencils.render_email("custom", "en", "c@a1.example", marked)
        expected = emails.email_of(
            "c@a1.example", {p: render(f"email/custom.{p}", plain, "en") for p in emails.EMAIL_PARTS}
        )
        assert (email.subject, email.text, email.html) == (expected.subject, expected.text, expected.html), name
    return stencils


def test_figures_of_any_number_type_and_time_share_a_stencil_when_they_print_alike():
    import numpy as np
    import pandas as pd

    stencils = Stencils()
    figures = [np.float64(12.5), 12.5, np.float64(12.5), float("nan"), float("nan"), -0.0, 0.0]
    for n, nps in enumerate(figures):
        marked, plain = _contexts("flash_results", "en", 2 * n, "Ada")  # responded: one variant a figure
        for context in (marked, plain):
            context["current"] = {**context["current"], "nps": nps}
            context["wave"] = {**WAVE, "close_at": pd.Timestamp(WAVE["close_at"]) if n % 2 else WAVE["close_at"]}
        email = stencils.render_email("flash_results", "en", "c@a1.example", marked)
        expected = emails.render_email("flash_results", "en", "c@a1.example", plain)
        assert (email.subject, email.text, email.html) == (expected.subject, expected.text, expected.html), nps
    assert stencils.counts["refused"] == 0 and stencils.counts["stencil"] >= 1


def test_personal_values_are_text():
    with pytest.raises(TypeError):
        Personal("")
    with pytest.raises(TypeError):
        Personal(None)  # type: ignore[arg-type]
