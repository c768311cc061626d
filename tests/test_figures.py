"""NPS arithmetic, routing, the retrospective's items, drops and message rendering."""

import datetime as dt
from dataclasses import asdict

import pandas as pd

from include.nps.core import emails
from include.nps.realtime import chat_messages
from include.nps.wave import retrospective, routing, sales_drops, stats
from include.nps.wave.responses import band


def test_nps_is_promoters_minus_detractors():
    scores = pd.Series([10, 9, 9, 8, 7, 6, 0, 3, 10, 5])
    assert stats.nps(scores) == {"responses": 10, "promoters": 4, "passives": 2, "detractors": 4, "nps": 0.0}
    assert stats.nps(pd.Series([9, 10]))["nps"] == 100.0
    assert stats.nps(pd.Series([], dtype="int64"))["nps"] is None


def test_direction_needs_a_change_larger_than_chance():
    def summary(promoters: int, passives: int, detractors: int) -> dict:
        return {"interval": asdict(stats.nps_interval(promoters, passives, detractors))}

    assert stats.nps_direction(summary(60, 30, 10), summary(30, 40, 30)) == "up"
    assert stats.nps_direction(summary(30, 40, 30), summary(60, 30, 10)) == "down"
    assert stats.nps_direction(summary(6, 3, 1), summary(5, 3, 2)) == "stable"  # +10 points on 10 answers
    assert stats.nps_direction(summary(6, 3, 1), None) == "new"


def test_score_bands():
    assert [band(s) for s in (10, 9, 8, 7, 6, 2, 1, 0)] == [
        "promoter",
        "promoter",
        "passive",
        "passive",
        "detractor",
        "detractor",
        "critical",
        "critical",
    ]


def test_routing_prefers_sales_for_strategic_accounts_and_falls_back():
    assert routing.choose_owner("Strategic", "s@x", "c@x", "ops@x") == ("sales", "s@x")
    assert routing.choose_owner("smb", "s@x", "c@x", "ops@x") == ("cs", "c@x")
    assert routing.choose_owner("smb", "s@x", None, "ops@x") == ("sales", "s@x")
    assert routing.choose_owner(None, None, None, "ops@x") == ("cs", "ops@x")


def test_retrospective_items_put_cons_first_and_name_silent_accounts():
    responses = pd.DataFrame(
        {
            "contact_id": ["a", "b", "c"],
            "account_name": ["A", "A", "B"],
            "score": [2, 8, 10],
            "comment": ["Too slow", "Reports", None],
        }
    )
    comments = retrospective.split_comments(responses)
    assert [c["comment"] for c in comments["cons"]] == ["Too slow"]
    assert [c["comment"] for c in comments["suggestions"]] == ["Reports"] and comments["pros"] == []
    accounts = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "account_name": ["A", "B", "C"],
            "csm": ["csm@x", None, "csm-c@x"],
            "vip": [0, 0, 1],
            "invited": [2, 1, 3],
            "responses": [2, 1, 0],
        }
    )
    summary = {"response_rate": 20.0, "nps": -10.0, "pillars": {"support": 3.0}}
    previous = {"nps": 5.0, "pillars": {"support": 4.0}}
    pillars = [{"id": "support", "text": "Support?"}]
    items = {
        i["item_key"]: i for i in retrospective.action_items(summary, previous, accounts, comments, pillars, "ops@x")
    }
    assert set(items) == {
        "response-rate",
        "nps-drop",
        "pillar-support",
        "review-cons",
        "silent-C",
        "suggestion-reporting",
    }
    assert items["silent-C"]["owner"] == "csm-c@x" and items["silent-C"]["priority"] == "high"
    assert items["suggestion-reporting"]["priority"] == "low" and items["suggestion-reporting"]["theme"] == "reporting"


def test_drop_cells_never_run_as_formulas():
    for text in ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert sales_drops.neutralise(text).startswith("'")
    assert sales_drops.neutralise("fine") == "fine" and sales_drops.neutralise(5) == 5


def test_customer_text_is_escaped_in_html_and_chat():
    context = {
        "wave": {"product": "Acme", "close_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)},
        "contact": {"name": "<img src=x onerror=alert(1)>"},
        "score_urls": [(s, f"http://x/s/t?score={s}") for s in range(11)],
        "survey_url": "http://x/s/t",
        "unsubscribe_url": "http://x/u/t",
    }
    for locale in ("en", "ja", "he"):  # translated text gets its values escaped too
        email = emails.render_email("invitation", locale, "a@b.example", context)
        assert "&lt;img src=x onerror=alert(1)&gt;" in email.html and "<img src=x" not in email.html
        assert "<img src=x onerror=alert(1)>" in email.text  # plain text is not HTML
    assert emails.render_email("invitation", "en", "a@b.example", context).subject == (
        "How likely are you to recommend Acme? (10 seconds)"
    )
    row = {"vip": True, "score": 2, "account_name": "A & B", "contact_name": "<@U123>", "comment": "<!channel> help"}
    context = {"r": row, "wave": {"name": "W"}, "band": "detractor", "detractor": True, "f": None, "csm": None}
    alert = chat_messages.slack_message({**context, "account_url": None, "channel": "program"})["text"]
    assert "&lt;!channel&gt;" in alert and "&lt;@U123&gt;" in alert and "A &amp; B" in alert
