"""The monthly closed-loop report on a data set whose answers are worked out by hand below: counts,
medians, Pareto shares, the grouped "Other" answers, incentive arms with Wilson intervals checked
against an independent computation, and who came back at the next wave. Then the report emailed
once over a real SMTP server, rendered in Chromium (`var/screenshots/closed_loop/report.png`), and
the whole `nps_followups` DAG under `dag.test()`."""

from __future__ import annotations

import datetime as dt
import json
import math
from statistics import NormalDist

import pytest

from include.nps.closed_loop import followups, monthly_report
from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import waves
from include.nps.wave.stats import wilson_interval
from tests.test_followups import open_followup, seed_wave

RULES = followups.load_rules()
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "closed_loop"
MANAGEMENT = ["ceo@vendor.example", "vp-cs@vendor.example"]
CONTACTS = [f"C{i}" for i in range(1, 14)]


def t(day: int, hour: int, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


# Each follow-up of wave W1 (program `test`): when it was opened, then its call log.
#   (contact, opened, [(action, when[, root cause, "Other" text or recovered])])
# Hours to first contact and to close, worked out by hand, are in the comments.
MARCH = [
    ("C1", t(2, 8), [("reached", t(2, 10)), ("cause", t(2, 11), "pricing"), ("close", t(4, 8), True)]),  # 2h, 48h
    ("C2", t(2, 8), [("tried", t(2, 12)), ("reached", t(3, 8)), ("cause", t(3, 9), "pricing"),
                     ("close", t(5, 8), False)]),  # 4h, 72h
    ("C3", t(3, 8), [("reached", t(3, 14)), ("cause", t(3, 15), "product_quality"),
                     ("close", t(6, 8), True)]),  # 6h, 72h
    ("C4", t(4, 8), [("tried", t(4, 16)), ("tried", t(5, 10)), ("unreachable", t(6, 8))]),  # 8h
    ("C5", t(5, 8), [("reached", t(5, 18)), ("cause", t(5, 19), "Invoices arrive late"),
                     ("close", t(10, 8), True)]),  # 10h, 120h
    ("C6", t(5, 8), [("reached", t(6, 8)), ("cause", t(6, 9), "Late invoice again!"),
                     ("close", t(9, 8), False)]),  # 24h, 96h
    ("C7", t(6, 8), [("reached", t(7, 8)), ("cause", t(7, 9), "Need SSO login"),
                     ("close", t(11, 8), True)]),  # 24h, 120h
    ("C8", t(6, 8), [("reached", t(6, 20)), ("cause", t(6, 21), "SSO with Okta, please"),
                     ("close", t(12, 8), True)]),  # 12h, 144h
    ("C9", t(9, 8), []),  # still open
    ("C10", t(9, 8), [("claim", t(9, 9))]),  # a claim is not a contact: still open
    ("C11", t(20, 8, 2), [("reached", t(21, 8, 2)), ("cause", t(21, 9, 2), "pricing"),
                          ("close", t(2, 8), True)]),  # February; closed in March after 240h
    ("C12", t(20, 8), [("reached", t(20, 9)), ("cause", t(20, 10), "onboarding"),
                       ("close", t(2, 8, 4), True)]),  # 1h; closed in April: still open (reached) on March 31
    ("C13", t(10, 8), [("reached", t(10, 11)), ("cause", t(10, 12), "The coffee machine"),
                       ("close", t(13, 8), False)]),  # 3h, 72h
]  # fmt: skip
# The incentive arm of each closed loop, set by hand so the arms' figures are known.
ARMS = {"C1": "service_credit", "C2": "none", "C11": "service_credit", "C3": "none", "C5": "none",
        "C6": "service_credit", "C7": "service_credit", "C8": "service_credit", "C13": "none"}  # fmt: skip
NEXT_WAVE_SCORES = {"C1": 9, "C2": 5, "C3": 7, "C5": 10, "C7": 3, "C9": 8}


def seed_march(engine, folder) -> None:
    """Waves W1 (January) and W2 (closed 2026-03-16) of program `test`, W1's follow-ups worked as
    in MARCH, and W2's answers of some of the same contacts."""
    first = seed_wave(engine, folder, CONTACTS, name="W1", start=t(5, 9, 1))
    second = seed_wave(engine, folder, CONTACTS, name="W2", start=t(2, 9))
    for wave in (first, second):
        waves.set_status(engine, wave.wave_id, "closed")
    for contact_id, opened, steps in MARCH:
        open_followup(engine, first.wave_id, contact_id, opened, score=4, comment=f"why {contact_id}")
        for action, when, *argument in steps:
            _work(engine, first.wave_id, contact_id, action, when, *argument)
    for contact_id, arm in ARMS.items():
        storage.execute(
            engine,
            "UPDATE followups SET incentive = :a, incentive_root_cause = root_cause WHERE contact_id = :c",
            {"a": arm, "c": contact_id},
        )
    for contact_id, score in NEXT_WAVE_SCORES.items():
        storage.execute(
            engine,
            "INSERT INTO responses (wave_id, contact_id, score, answered_at, updated_at) VALUES (:w, :c, :s, :t, :t)",
            {"w": second.wave_id, "c": contact_id, "s": score, "t": t(10, 9)},
        )


def _work(engine, wave_id: str, contact_id: str, action: str, when: dt.datetime, argument=None) -> None:
    who = {"actor": "ana@vendor.example", "now": when, "rules": RULES}
    if action in ("tried", "reached"):
        followups.log_attempt(engine, wave_id, contact_id, outcome=action, **who)
    elif action == "unreachable":
        followups.mark_unreachable(engine, wave_id, contact_id, **who)
    elif action == "claim":
        followups.claim(engine, wave_id, contact_id, **who)
    elif action == "cause" and argument in RULES.root_causes:
        followups.record_root_cause(engine, wave_id, contact_id, root_cause=argument, **who)
    elif action == "cause":
        followups.record_root_cause(engine, wave_id, contact_id, root_cause="other", other_text=argument, **who)
    else:
        followups.close(engine, wave_id, contact_id, recovered=argument, **who)


def wilson_by_quadratic(successes: int, n: int) -> tuple[float, float]:
    """The Wilson bounds as the roots of (p - x/n)^2 = z^2 p (1 - p) / n, solved for p."""
    z = NormalDist().inv_cdf(0.975)
    phat = successes / n
    a, b, c = 1 + z * z / n, -(2 * phat + z * z / n), phat * phat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


@pytest.fixture
def march(engine, tmp_path):
    seed_march(engine, tmp_path)
    return engine


# --- the figures --------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n"), [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 4), (7, 40), (81, 263)])
def test_the_wilson_interval_is_the_root_pair_of_its_quadratic(successes, n):
    low, high = wilson_interval(successes, n)
    expected = wilson_by_quadratic(successes, n)
    assert low == pytest.approx(max(0.0, expected[0]), abs=1e-12) and high == pytest.approx(min(1.0, expected[1]))
    assert low <= successes / n <= high


def test_the_wilson_interval_matches_published_values_and_refuses_nonsense():
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)  # Newcombe (1998), method 3
    assert wilson_interval(3, 4) == pytest.approx((0.3006, 0.9544), abs=5e-5)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_other_answers_are_grouped_by_the_word_most_of_them_share():
    answers = [{"text": text} for text in ("Invoices arrive late", "Late invoice again!", "Need SSO login",
                                           "SSO with Okta, please", "The coffee machine", "")]  # fmt: skip
    grouped = monthly_report.group_other_answers(answers)
    assert [(g["word"], [a["text"] for a in g["answers"]]) for g in grouped["groups"]] == [
        ("invoice", ["Invoices arrive late", "Late invoice again!"]),  # invoice and late both twice: alphabetical
        ("sso", ["Need SSO login", "SSO with Okta, please"]),
    ]
    assert [a["text"] for a in grouped["ungrouped"]] == ["The coffee machine", ""]
    assert monthly_report.significant_words("ＳＳＯ access, the Invoices!! 2024") == ["sso", "access", "invoice"]


def test_month_bounds_and_the_month_before():
    assert monthly_report.month_bounds("2026-12") == (t(1, 0, 12), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert monthly_report.previous_month(dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC)) == "2025-12"
    with pytest.raises(monthly_report.ReportError):
        monthly_report.month_bounds("2026-13")


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_march_report_has_the_figures_worked_out_by_hand(request, tmp_path, database):
    engine = request.getfixturevalue("engine" if database == "sqlite" else "pg_engine")
    seed_march(engine, tmp_path)
    report = monthly_report.build_report(engine, "2026-03", RULES, now=t(1, 6, 4))

    # Opened in March: all but C11 (February). Closed in March: C1 C2 C3 C5 C6 C7 C8 C11 C13 (C12 in
    # April); 6 of them recovered. Unreachable: C4. Still open on March 31: C9, C10 (open), C12 (reached).
    assert report["counts"] == {
        "opened": 12,
        "closed": 9,
        "unreachable": 1,
        "still_open": 3,
        "still_open_by_status": {"open": 2, "contacting": 0, "reached": 1},
        "recovered": 6,
    }
    # First contacted in March: 2 4 6 8 10 24 24 12 1 3 hours -> sorted 1 2 3 4 [6 8] 10 12 24 24.
    assert report["first_contacted"] == 10 and report["median_hours_to_first_contact"] == 7.0
    # Closed in March: 48 72 72 120 96 120 144 240 72 hours -> sorted 48 72 72 72 [96] 120 120 144 240.
    assert report["median_hours_to_close"] == 96.0
    # Pareto of the 9 closed: pricing 3, product quality 1, other 5 (last, as Pareto charts put it).
    assert [(r["root_cause"], r["count"], r["share"], r["cumulative_share"]) for r in report["pareto"]] == [
        ("pricing", 3, round(100 * 3 / 9, 1), round(100 * 3 / 9, 1)),
        ("product_quality", 1, round(100 * 1 / 9, 1), round(100 * 4 / 9, 1)),
        ("other", 5, round(100 * 5 / 9, 1), 100.0),
    ]
    assert report["closed_without_root_cause"] == 0
    other = report["other_groups"]
    assert other["total"] == 5
    assert [(g["word"], sorted(a["contact_name"] for a in g["answers"])) for g in other["groups"]] == [
        ("invoice", ["Person C5", "Person C6"]),
        ("sso", ["Person C7", "Person C8"]),
    ]
    assert [a["text"] for a in other["ungrouped"]] == ["The coffee machine"]

    # Arms (all loops closed before April): pricing credit 2/2, none 0/1; product quality none 1/1;
    # other none 1/2 (C5 yes, C13 no), credit 2/3 (C6 no, C7 yes, C8 yes).
    arms = {
        (cause["root_cause"], v["incentive"]): (v["n"], v["recovered"], v["rate"], v["low"], v["high"])
        for cause in report["incentives"]
        for v in cause["variants"]
    }
    known = {
        ("product_quality", "none"): (1, 1),
        ("pricing", "none"): (1, 0),
        ("pricing", "service_credit"): (2, 2),
        ("other", "none"): (2, 1),
        ("other", "service_credit"): (3, 2),
    }
    assert list(arms) == list(known)  # the rules' order of root causes, then of their variants
    for key, (n, recovered) in known.items():
        low, high = wilson_by_quadratic(recovered, n)
        expected = (n, recovered, round(100 * recovered / n, 1), round(100 * max(low, 0), 1), round(100 * high, 1))
        assert arms[key] == expected, key
    assert arms[("other", "service_credit")][3:] == (20.8, 93.9)  # 2 of 3: 20.8% to 93.9%

    # W1 -> W2 (closed 03-16): 13 followed up, 6 answered: C5 10 and C1 9 promoters, C9 8 and C3 7
    # passives, C2 5 and C7 3 still detractors.
    back = report["came_back"]
    assert back["pairs"] == [
        {
            "wave": "W1",
            "next_wave": "W2",
            "next_close_at": t(16, 9),
            "followed_up": 13,
            "answered": 6,
            "promoters": 2,
            "passives": 2,
            "detractors": 2,
            "came_back": 4,
        }
    ]
    assert back["total"] == 4
    assert [(p["contact_name"], p["score"], p["next_score"]) for p in back["people"]] == [
        ("Person C5", 4, 10),
        ("Person C1", 4, 9),
        ("Person C9", 4, 8),
        ("Person C3", 4, 7),
    ]


def test_the_report_of_a_past_month_does_not_change_with_later_work(march):
    before = monthly_report.build_report(march, "2026-02", RULES, now=t(1, 6))
    followups.log_attempt(march, "test-w1", "C9", "ana", "reached", t(3, 9, 4), RULES)  # in April
    after = monthly_report.build_report(march, "2026-02", RULES, now=t(1, 6))
    assert before == after
    assert before["counts"]["opened"] == 1 and before["counts"]["still_open_by_status"]["reached"] == 1  # C11


# --- the email, the file and the picture --------------------------------------------------------


def test_the_report_is_emailed_once_per_month_and_kept_as_html(march, smtp):
    report = monthly_report.build_report(march, "2026-03", RULES, now=t(1, 6, 4))
    with SmtpTransport() as transport:
        first = monthly_report.send(march, report, MANAGEMENT, "NPS <nps@vendor.example>", transport)
        again = monthly_report.send(march, report, MANAGEMENT, "NPS <nps@vendor.example>", transport)
    assert (first.sent, again.sent) == (1, 0) and monthly_report.report_sent(march, "2026-03")
    received = smtp.spool.messages()
    assert len(received) == 2 and len({m["Message-ID"] for m in received}) == 1  # one message, two mailboxes
    message = received[0]
    assert message["To"] == "ceo@vendor.example, vp-cs@vendor.example"
    assert message["Subject"] == "[NPS] Closed loop March 2026: 12 opened, 9 closed, 4 came back"
    text = message.get_body(("plain",)).get_content()
    assert "Median time to first contact: 7.0 h" in text and "Median time to close: 96.0 h" in text
    assert "- Pricing, value for money: 3, 33.3%, 33.3%" in text
    assert "10% service credit on the next invoice: 2 of 3 recovered, 66.7% (20.8% to 93.9%)" in text
    html = message.get_body(("html",)).get_content()
    path = monthly_report.write_html(report, html)
    assert path.name == "closed-loop-2026-03.html" and path.parent.name == "closed-loop"
    assert "Closed loop: March 2026" in path.read_text(encoding="utf-8")
    assert monthly_report.report_due(march, t(1, 6, 4)) is None  # March went out: the April runs skip it
    assert monthly_report.report_due(march, t(1, 6, 5)) == "2026-04"
    assert monthly_report.report_due(march, t(2, 6, 4), "2026-03") == "2026-03"  # asked for again in the form
    with pytest.raises(monthly_report.ReportError, match="2026-04 has not ended yet"):
        monthly_report.report_due(march, t(1, 6, 4), "2026-04")  # a partial month would take its place
    with pytest.raises(monthly_report.ReportError, match="no management recipients"):
        monthly_report.send(march, report, [], "nps@vendor.example", transport)
    assert monthly_report.management_recipients("a@x.example; b@x.example\nA@x.example") == [
        "a@x.example",
        "b@x.example",
    ]


@pytest.mark.browser
def test_the_report_reads_right_in_chromium(march, browser):
    report = monthly_report.build_report(march, "2026-03", RULES, now=t(1, 6, 4))
    html = monthly_report.render(report, MANAGEMENT).html
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 640, "height": 900})
    page.set_content(html)
    body = page.inner_text("body")
    for shown in ("Closed loop: March 2026", "loops opened", "7.0 h", "96.0 h", "33.3%", "20.8% – 93.9%", "“invoice”"):
        assert shown in body, shown
    assert page.evaluate("document.documentElement.scrollWidth") <= 640, "wider than a mail client's pane"
    page.screenshot(path=SCREENSHOTS / "report.png", full_page=True)
    page.close()
    assert (SCREENSHOTS / "report.png").stat().st_size > 10_000


# --- the DAG --------------------------------------------------------------------------------------


def test_the_followups_dag_runs_sync_sweep_and_report(airflow_db, march, nps_home, smtp, httpserver, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    storage.execute(march, "UPDATE followups SET crm_task_id = 'T-9' WHERE contact_id = 'C9'")
    httpserver.expect_request("/tasks/T-9").respond_with_json({"id": "T-9", "status": "In Progress"})
    monkeypatch.setenv("AIRFLOW_CONN_NPS_CRM", json.dumps({"conn_type": "http", "host": httpserver.url_for("/")}))
    monkeypatch.setenv("NPS_MANAGEMENT_RECIPIENTS", ",".join(MANAGEMENT))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "nps_followups.py"))
    run = bag.get_dag("nps_followups").test(run_conf={"report_month": "2026-03"})

    assert str(run.state) == "success"
    assert followups.load(march, "test-w1", "C9")["status"] == "contacting"  # synced from the CRM
    kinds = sorted((m["X-NPS-Kind"], m["To"]) for m in smtp.spool.messages())
    assert kinds == [
        ("closed_loop_report", "ceo@vendor.example, vp-cs@vendor.example"),
        ("closed_loop_report", "ceo@vendor.example, vp-cs@vendor.example"),
        ("followup_escalation", "csops@vendor.example"),  # C10: open, long past its SLA (C9 was just contacted)
    ]
    assert (nps_home / "reports" / "closed-loop" / "closed-loop-2026-03.html").exists()
