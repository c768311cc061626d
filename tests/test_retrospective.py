"""The retrospective: comments split and themed, themes ranked by detractors, action items (which,
risk, owner, order, due dates, checkpoints, stable keys), and the step itself writing its report
file and emailing it with the chart, re-run without duplicates."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from include.nps import pipeline
from include.nps.core import business_days, storage
from include.nps.delivery import outbox
from include.nps.wave import audience, comment_themes, retrospective, waves
from tests.factories import contact, planned_wave, write_csv

# (contact, account, score, locale, comment): 7 detractors (one without a comment)
ANSWERS = [
    ("C01", "A", 2, "en", "Too expensive. Support never answers."),
    ("C02", "A", 3, "ja", "サポートの返答が遅いです。"),
    ("C03", "B", 5, "he", "המחיר יקר מדי"),
    ("C04", "B", 6, "en", "Outage last week."),
    ("C05", "B", 1, "en", "We are unhappy."),
    ("C06", "E", 6, "en", "Prices went up again."),
    ("C12", "E", 0, "en", None),
    ("C07", "E", 7, "en", "Reporting should export to Excel."),
    ("C08", "E", 8, "en", "Crashes sometimes."),
    ("C13", "E", 8, "en", "Keep it up"),
    ("C09", "F", 9, "en", "Please add dashboards."),
    ("C10", "F", 10, "en", "Great support team!"),
    ("C11", "F", 9, "en", "Easy to use."),
]


def answers() -> pd.DataFrame:
    rows = [dict(zip(("contact_id", "account_name", "score", "locale", "comment"), a, strict=True)) for a in ANSWERS]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def themes() -> comment_themes.Themes:
    return comment_themes.load_themes()


@pytest.fixture(scope="module")
def parts(themes) -> list[dict]:
    return retrospective.classify_comments(answers(), comment_themes.KeywordClassifier(themes))


def test_every_comment_is_split_into_pros_cons_and_suggestions_lowest_score_first(parts):
    split = retrospective.split_comments(answers())  # the keyword classifier over the shipped themes
    assert split == retrospective.by_kind(parts)
    assert [(c["contact_id"], c["comment"], c["theme"]) for c in split["cons"]] == [
        ("C05", "We are unhappy.", None),
        ("C01", "Too expensive.", "pricing"),
        ("C01", "Support never answers.", "support"),
        ("C02", "サポートの返答が遅いです。", "support"),
        ("C03", "המחיר יקר מדי", "pricing"),
        ("C04", "Outage last week.", "reliability"),
        ("C06", "Prices went up again.", "pricing"),
        ("C08", "Crashes sometimes.", "reliability"),
    ]
    assert [(c["contact_id"], c["theme"]) for c in split["suggestions"]] == [
        ("C07", "reporting"),
        ("C13", None),
        ("C09", "reporting"),
    ]
    assert [(c["contact_id"], c["theme"]) for c in split["pros"]] == [("C11", "usability"), ("C10", "support")]


def test_themes_are_ranked_by_distinct_detractors_then_by_all_comments(parts, themes):
    ranking = retrospective.rank_themes(parts, themes, wave_detractors=7)
    counts = [
        (r["rank"], r["theme"], r["detractors"], r["mentions"], r["cons"], r["suggestions"], r["pros"], r["risk"])
        for r in ranking
    ]
    assert counts == [
        (1, "pricing", 3, 3, 3, 0, 0, "high"),  # three detractors
        (2, "support", 2, 3, 2, 0, 1, "high"),  # two detractors, 29% of the seven
        (3, "reliability", 1, 2, 2, 0, 0, "medium"),  # one detractor, 14%
        (4, "reporting", 0, 2, 0, 2, 0, None),  # no con: no risk
        (5, "usability", 0, 1, 0, 0, 1, None),
    ]
    assert ranking[0]["example"] == {"text": "Too expensive.", "score": 2, "account_name": "A", "kind": "con"}
    assert ranking[3]["example"]["text"] == "Reporting should export to Excel."  # no con: the first comment
    assert ranking[1]["owner"] == "support-lead@vendor.example" and ranking[0]["owner"] is None


def items_for(parts, themes, **overrides) -> list[dict]:
    accounts = pd.DataFrame(
        {
            "account_id": ["A", "C", "D"],
            "account_name": ["A Inc", "C Inc", "D Inc"],
            "csm": ["csm-a@x", "csm-c@x", None],
            "vip": [0, 1, 0],
            "invited": [3, 2, 4],
            "responses": [2, 0, 0],
        }
    )
    args = {
        "summary": {"response_rate": 20.0, "nps": -10.0, "detractors": 7, "pillars": {"support": 3.0}},
        "previous": {"nps": 5.0, "response_rate": 22.0, "pillars": {"support": 4.0}},
        "accounts": accounts,
        "comments": retrospective.by_kind(parts),
        "pillars": [{"id": "support", "text": "Support?"}],
        "owner": "ops@x",
        "themes": themes,
        "ranking": retrospective.rank_themes(parts, themes, 7),
        "collection": {"bounce_rate": 4.0, "opt_out_rate": 1.0, "reminded": 20, "reminder_yield": 5.0},
        "nps_direction": "down",
    }
    return retrospective.action_items(**{**args, **overrides})


def test_action_items_put_cons_first_collection_problems_next_and_suggestions_last(parts, themes):
    items = items_for(parts, themes)
    assert [(i["item_key"], i["risk"], i["owner"]) for i in items] == [
        ("theme-pricing", "high", "ops@x"),  # pricing has no owner in the file: CS ops
        ("theme-support", "high", "support-lead@vendor.example"),
        ("nps-drop", "high", "ops@x"),  # larger than chance
        ("pillar-support", "medium", "ops@x"),
        ("review-cons", "low", "ops@x"),  # reliability (medium) and C05's theme-less con: no item of their own
        ("response-rate", "high", "ops@x"),
        ("silent-C", "high", "csm-c@x"),  # a VIP account, owned by its CSM
        ("bounce-rate", "medium", "ops@x"),
        ("silent-D", "medium", "ops@x"),  # no CSM: CS ops
        ("reminder", "low", "ops@x"),
        ("suggestion-reporting", "low", "product-lead@vendor.example"),  # the theme's owner
        ("review-suggestions", "low", "ops@x"),  # C13's "Keep it up" names no theme
    ]
    by_key = {i["item_key"]: i for i in items}
    assert by_key["theme-support"]["reason"] == (
        "raised by 2 of 7 detractor(s) (29% of them); 2 con(s), 0 suggestion(s), 1 pro(s)"
    )
    assert by_key["theme-support"]["theme"] == "support" and by_key["nps-drop"]["theme"] is None
    assert by_key["response-rate"]["reason"] == "20.0% answered, below the 30% target"
    assert by_key["review-cons"]["reason"] == (
        "3 con(s) no item above covers (Reliability and outages 2, no theme 1), 2 from detractors"
    )
    assert by_key["suggestion-reporting"]["reason"] == "2 suggestion(s) from 2 customer(s)"
    assert by_key["suggestion-reporting"]["title"] == "Consider what customers suggest about Reporting and analytics"
    assert by_key["review-suggestions"]["reason"] == "1 suggestion(s) from 1 customer(s) that no theme covers"
    assert all(i["priority"] == i["risk"] for i in items)
    assert items == items_for(parts, themes)  # the same findings, the same keys and order


def test_collection_problems_follow_the_survey_review(parts, themes):
    def keys(**overrides) -> list[str]:
        return [
            i["item_key"]
            for i in items_for(parts, themes, **overrides)
            if retrospective.group_of(i["item_key"]) == "collection"
        ]

    healthy = {"bounce_rate": 1.0, "opt_out_rate": 0.5, "reminded": 20, "reminder_yield": 40.0}
    no_silent = pd.DataFrame(columns=["account_id", "account_name", "csm", "vip", "invited", "responses"])
    summary = {"response_rate": 45.0, "nps": 10.0, "detractors": 7, "pillars": {}}
    assert keys(summary=summary, collection=healthy, accounts=no_silent) == []
    fell = {"response_rate": 52.0}  # the previous wave's
    items = items_for(parts, themes, summary=summary, previous=fell, collection=healthy, accounts=no_silent)
    assert [(i["item_key"], i["risk"], i["reason"]) for i in items if i["item_key"] == "response-rate"] == [
        ("response-rate", "medium", "45.0% answered, down from 52.0% in the previous wave")
    ]
    worse = {"bounce_rate": 7.0, "opt_out_rate": 2.5, "reminded": 5, "reminder_yield": 0.0}
    items = items_for(parts, themes, summary=summary, collection=worse, accounts=no_silent)
    assert [(i["item_key"], i["risk"]) for i in items if retrospective.group_of(i["item_key"]) == "collection"] == [
        ("bounce-rate", "high"),  # over twice the 3% limit
        ("opt-out-rate", "medium"),  # five reminded are too few to judge the reminder
    ]


def test_a_drop_within_chance_is_a_medium_item(parts, themes):
    items = {i["item_key"]: i for i in items_for(parts, themes, nps_direction="stable")}
    assert items["nps-drop"]["risk"] == "medium" and "within chance" in items["nps-drop"]["reason"]


def test_due_dates_and_checkpoints_count_business_days_of_the_waves_country():
    friday = dt.datetime(2026, 3, 6, 9, tzinfo=dt.UTC)
    due, checkpoints = retrospective.schedule("high", friday, "US")
    assert due == dt.date(2026, 3, 13)
    assert checkpoints == [
        {"name": "plan agreed", "date": "2026-03-09"},
        {"name": "halfway review", "date": "2026-03-11"},
        {"name": "done", "date": "2026-03-13"},
    ]
    assert retrospective.schedule("low", friday, "US")[0] == dt.date(2026, 4, 3)
    before_memorial_day = dt.datetime(2026, 5, 22, 9, tzinfo=dt.UTC)
    assert retrospective.schedule("high", before_memorial_day, "US")[1][0]["date"] == "2026-05-26"


def test_due_dates_are_dates_of_the_waves_country_not_of_utc():
    """Tokyo is 9 hours ahead: the retrospective at 20:00 UTC on Tue 04-28 is Wed 04-29 (Showa Day) there,
    so the plan is agreed on Thu 04-30, a business day in Japan, not on the holiday (the UTC date)."""
    late_in_utc = dt.datetime(2026, 4, 28, 20, tzinfo=dt.UTC)
    due, checkpoints = retrospective.schedule("high", late_in_utc, "JP")
    plan_agreed = dt.date.fromisoformat(checkpoints[0]["date"])
    assert plan_agreed == dt.date(2026, 4, 30) and business_days.is_business_day(plan_agreed, "JP")
    assert all(business_days.is_business_day(dt.date.fromisoformat(c["date"]), "JP") for c in checkpoints)
    assert due == dt.date.fromisoformat(checkpoints[-1]["date"])


def test_a_re_run_updates_items_but_never_duplicates_reassigns_or_re_dates_them(engine, tmp_path, parts, themes):
    wave = planned_wave(engine, write_csv(tmp_path / "c.csv", [contact("C1")]))
    items = items_for(parts, themes)
    start = dt.datetime(2026, 3, 20, 9, tzinfo=dt.UTC)
    retrospective.store_action_items(engine, wave.wave_id, items, start, "US")
    storage.execute(
        engine,
        "UPDATE action_items SET owner = 'someone@x', due_date = '2026-06-01', status = 'done' "
        "WHERE item_key = 'theme-pricing'",
    )
    changed = [{**i, "reason": "new figures"} if i["item_key"] == "theme-pricing" else i for i in items]
    retrospective.store_action_items(engine, wave.wave_id, changed, start + dt.timedelta(days=30), "US")

    stored = retrospective.action_items_frame(engine, wave.wave_id, items)
    assert list(stored["item_key"]) == [i["item_key"] for i in items]  # the same rows, in order
    pricing = stored.iloc[0].to_dict()
    assert (pricing["owner"], pricing["due_date"], pricing["status"]) == ("someone@x", "2026-06-01", "done")
    assert pricing["reason"] == "new figures" and pricing["risk"] == "high" and pricing["theme"] == "pricing"
    assert pricing["checkpoints"][0] == {"name": "plan agreed", "date": "2026-03-23"}  # from the first run
    assert pricing["tracker_issue"] is None and pricing["tracker_status"] is None
    assert stored.iloc[1]["due_date"] == "2026-03-27"  # five business days after the first run


# --- the step -----------------------------------------------------------------------------------

OPEN = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def seed_wave(engine, tmp_path) -> waves.WaveParams:
    """One wave closed and answered as in ANSWERS, every invitation delivered; account G silent."""
    rows = [contact(c, account=a, locale=loc) for c, a, _, loc, _ in ANSWERS]
    rows += [contact("C20", account="G", vip="true", csm="csm-g@vendor.example")]
    wave = planned_wave(engine, write_csv(tmp_path / "contacts.csv", rows), start=OPEN)
    loaded = audience.load_contacts(engine, wave.wave_id, tmp_path / "contacts.csv")
    audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 0, wave.open_at)
    outbox.enqueue(engine, wave.wave_id, "invitation", [(r["contact_id"], r["email"]) for r in rows])
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": OPEN})
    waves.set_status(engine, wave.wave_id, "open")
    hostile = {"C01": "<script>alert(1)</script> Too expensive. Support never answers."}
    storage.execute(
        engine,
        storage.query("upsert_response"),
        [
            {
                "wave_id": wave.wave_id,
                "contact_id": c,
                "score": s,
                "comment": hostile.get(c, text),
                "pillar_answers": "{}",
                "now": OPEN + dt.timedelta(days=1),
            }
            for c, _, s, _, text in ANSWERS
        ],
    )
    waves.set_status(engine, wave.wave_id, "closed")
    return wave


def test_the_step_reports_themes_and_items_by_email_and_file_and_re_runs_safely(engine, tmp_path, smtp, nps_home):
    wave = seed_wave(engine, tmp_path)
    first = pipeline.run_retrospective(wave.wave_id)
    assert first["sent"] == 1 and first["themes"] == 5 and first["tracker_issues"] == 0

    report = (nps_home / "reports" / wave.wave_id / "retrospective.html").read_text(encoding="utf-8")
    assert first["report"].endswith("retrospective.html")
    assert "<h3>What detractors talk about</h3>" in report and 'src="data:image/png;base64,' in report
    assert '<td>Pricing and value</td><td align="right">3</td>' in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Too expensive." in report and "<script>" not in report
    assert "Act on what detractors say about Support" in report and "support-lead@vendor.example" in report
    assert "Reach out to silent account G Inc" in report and "halfway review" in report
    assert "<p>1 of 1 passed; quarantined contact rows: 0.</p>" in report  # the wave's data checks
    assert "retrospective: retrospective suite passed (4 expectations on 6 rows)" in report

    email = smtp.spool.messages()[0]
    assert email["X-NPS-Kind"] == "retrospective" and email["To"] == "csops@vendor.example"
    plain, related = email.get_payload()
    html, image = related.get_payload()
    assert f'src="cid:{retrospective.CHART_CONTENT_ID}"' in html.get_content()
    assert image.get_content_type() == "image/png" and image["Content-ID"] == f"<{retrospective.CHART_CONTENT_ID}>"
    assert "&lt;script&gt;alert(1)" in html.get_content() and "<script>" not in html.get_content()
    text = plain.get_content()
    assert "1. Pricing and value: 3 detractor(s), 3 comment(s); cons 3, suggestions 0, pros 0; risk high" in text
    assert "- [high] Act on what detractors say about Pricing and value:" in text
    assert "(2) A Inc [Pricing and value]: <script>alert(1)</script> Too expensive." in text

    items = storage.fetch_all(engine, "SELECT item_key, risk, checkpoints FROM action_items ORDER BY item_key")
    assert [i["item_key"] for i in items] == [
        "review-cons",
        "review-suggestions",
        "silent-G",
        "suggestion-reporting",
        "theme-pricing",
        "theme-support",
    ]
    assert all(i["risk"] and len(json.loads(i["checkpoints"])) == 3 for i in items)

    second = pipeline.run_retrospective(wave.wave_id)
    assert second["sent"] == 0 and second["action_items"] == first["action_items"] == len(items)
    assert len(smtp.spool.messages()) == 1


def test_a_broken_themes_file_or_tracker_connection_stops_the_step_before_anything(engine, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    wave = seed_wave(engine, tmp_path)
    broken = tmp_path / "themes.yaml"
    broken.write_text("version: 1\nthemes: []\n", encoding="utf-8")
    monkeypatch.setenv(comment_themes.THEMES_ENV, str(broken))
    with pytest.raises(AirflowFailException, match=r"themes: expected a list of themes"):
        pipeline.run_retrospective(wave.wave_id)
    monkeypatch.delenv(comment_themes.THEMES_ENV)
    monkeypatch.setenv("AIRFLOW_CONN_NPS_TRACKER", json.dumps({"conn_type": "http", "host": "https://x.example"}))
    with pytest.raises(AirflowFailException, match=r"extra\.flavour: must be 'jira' or 'github', got None"):
        pipeline.run_retrospective(wave.wave_id)
    assert storage.fetch_all(engine, "SELECT item_key FROM action_items") == []
    assert outbox.counts(engine, wave.wave_id) == {"invitation": {"sent": 14}}
