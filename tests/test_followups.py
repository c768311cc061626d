"""Follow-up tracking: the state machine and its call log, claims so two people never call the same
customer, incentives assigned once and reproducibly, the internal form over HTTP (real server),
the SLA sweep against a real SMTP server, and the CRM status sync against a real HTTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.servers import SurveyServer
from include.nps.closed_loop import crm_sync, followups, sla_sweep
from include.nps.closed_loop.followups import AlreadyClaimed, IllegalTransition, InvalidInput, StaleFollowup
from include.nps.core import signed_links, storage
from include.nps.core.storage import PROJECT_ROOT
from include.nps.delivery.transports import SmtpTransport, TransientFailure
from include.nps.wave import audience
from include.nps.web.survey_form import FormSettings
from tests.factories import contact, planned_wave, write_csv

T0 = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC)  # a Monday
RULES = followups.load_rules()
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "closed_loop"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def seed_wave(engine, folder: Path, contact_ids: list[str], name: str = "W1", start: dt.datetime | None = None):
    """A planned wave of program `test` whose contacts are loaded (each in their own account)."""
    rows = [contact(c, account=f"A{c}", account_name=f"Account {c}") for c in contact_ids]
    path = write_csv(folder / f"{name}.csv", rows)
    wave = planned_wave(engine, path, name=name, start=start or dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC))
    audience.load_contacts(engine, wave.wave_id, path)
    return wave


def open_followup(engine, wave_id: str, contact_id: str, created_at: dt.datetime, score: int = 3, comment=None):
    """A routed detractor's follow-up, opened at `created_at`, with their answer."""
    answer = {"w": wave_id, "c": contact_id, "s": score, "m": comment, "t": created_at}
    storage.execute(
        engine,
        "INSERT INTO responses (wave_id, contact_id, score, comment, answered_at, updated_at) "
        "VALUES (:w, :c, :s, :m, :t, :t)",
        answer,
    )
    row = {
        "wave_id": wave_id,
        "contact_id": contact_id,
        "account_id": f"A{contact_id}",
        "score": score,
        "owner_type": "cs",
        "owner": "csm@vendor.example",
        "owner_source": "rule",
        "now": created_at,
    }
    storage.execute(engine, storage.query("insert_followup"), row)


@pytest.fixture
def wave(engine, tmp_path):
    wave = seed_wave(engine, tmp_path, ["C1", "C2", "C3"])
    for contact_id in ("C1", "C2", "C3"):
        open_followup(engine, wave.wave_id, contact_id, T0, comment="slow dashboards")
    return wave


def state(engine, wave_id: str, contact_id: str = "C1") -> dict:
    return followups.load(engine, wave_id, contact_id)


def log_of(engine, wave_id: str, contact_id: str = "C1") -> list[tuple]:
    rows = followups.events(engine, wave_id, contact_id)
    return [(e["revision"], e["action"], e["outcome"], e["from_status"], e["to_status"]) for e in rows]


# --- the state machine --------------------------------------------------------------------------


def test_a_followup_goes_open_contacting_reached_closed_and_every_step_is_logged(engine, wave):
    w, now = wave.wave_id, at(1)
    followups.claim(engine, w, "C1", "ana@vendor.example", now, RULES)
    followups.log_attempt(engine, w, "C1", "ana@vendor.example", "tried", at(1.1), RULES, note="voicemail")
    followups.claim(engine, w, "C1", "ana@vendor.example", at(5), RULES)
    followups.log_attempt(engine, w, "C1", "ana@vendor.example", "reached", at(5.2), RULES)
    followups.record_root_cause(engine, w, "C1", "ana@vendor.example", "pricing", at(5.3), RULES)
    closed = followups.close(engine, w, "C1", "ana@vendor.example", True, at(5.4), RULES, note="offered credit")

    assert closed["status"] == "closed" and closed["recovered"] is True and closed["revision"] == 6
    assert log_of(engine, w) == [
        (1, "claim", None, "open", "open"),
        (2, "attempt", "tried", "open", "contacting"),
        (3, "claim", None, "contacting", "contacting"),
        (4, "attempt", "reached", "contacting", "reached"),
        (5, "root_cause", "pricing", "reached", "reached"),
        (6, "close", "recovered", "reached", "closed"),
    ]
    stored = state(engine, w)
    assert stored["closed_at"] == at(5.4) and stored["claimed_by"] is None and stored["root_cause"] == "pricing"
    assert followups.events(engine, w, "C1")[1]["note"] == "voicemail"


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_note_with_nul_and_control_characters_is_kept_without_them(database, request, tmp_path):
    """PostgreSQL refuses a NUL in text: a call note pasted with one is stored without it, lines kept."""
    engine = request.getfixturevalue("engine" if database == "sqlite" else "pg_engine")
    wave = seed_wave(engine, tmp_path, ["C1"])
    open_followup(engine, wave.wave_id, "C1", T0, comment="slow dashboards")
    followups.claim(engine, wave.wave_id, "C1", "ana@vendor.example", at(1), RULES)
    note = "left a voicemail\x00\r\nwill call\x1b[31m back\tFriday"
    followups.log_attempt(engine, wave.wave_id, "C1", "ana@vendor.example", "tried", at(1.1), RULES, note=note)
    assert followups.events(engine, wave.wave_id, "C1")[1]["note"] == "left a voicemail\nwill call[31m back\tFriday"


def test_a_first_call_that_reaches_the_customer_passes_through_contacting(engine, wave):
    followups.log_attempt(engine, wave.wave_id, "C1", "ana", "reached", at(1), RULES)
    assert state(engine, wave.wave_id)["status"] == "reached"
    assert followups.path_between("open", "reached") == ["contacting", "reached"]
    assert followups.path_between("reached", "open") is None


def test_unreachable_after_attempts_and_a_later_attempt_reopens_it(engine, wave):
    w = wave.wave_id
    followups.log_attempt(engine, w, "C1", "ana", "tried", at(1), RULES)
    followups.log_attempt(engine, w, "C1", "ana", "call_back_later", at(2), RULES)
    followups.mark_unreachable(engine, w, "C1", "ana", at(3), RULES, note="three voicemails")
    assert state(engine, w)["status"] == "unreachable"
    followups.log_attempt(engine, w, "C1", "ben", "tried", at(30), RULES)
    assert state(engine, w)["status"] == "contacting"
    assert [e[3:] for e in log_of(engine, w)][-2:] == [("contacting", "unreachable"), ("unreachable", "contacting")]


def _closed(engine, w):
    followups.log_attempt(engine, w, "C1", "ana", "reached", at(1), RULES)
    followups.record_root_cause(engine, w, "C1", "ana", "billing", at(2), RULES)
    followups.close(engine, w, "C1", "ana", False, at(3), RULES)


def act(name: str, actor: str = "ana", **kwargs):
    """A call of `followups.<name>` on C1 at 13:00, for the table below."""
    return lambda e, w: getattr(followups, name)(e, w, "C1", actor=actor, now=at(5), rules=RULES, **kwargs)


@pytest.mark.parametrize(
    ("setup", "action", "error", "code"),
    [
        (None, act("mark_unreachable"), IllegalTransition, "no_attempt_yet"),
        (None, act("close", recovered=True), IllegalTransition, "not_reached"),
        (None, act("record_root_cause", root_cause="pricing"), IllegalTransition, "not_reached"),
        ("tried", act("close", recovered=True), IllegalTransition, "not_reached"),
        ("reached", act("mark_unreachable"), IllegalTransition, "illegal_transition"),
        ("reached", act("close", recovered=True), InvalidInput, "root_cause_missing"),
        ("reached", act("record_root_cause", root_cause="other", other_text="  "), InvalidInput, "other_text_missing"),
        ("reached", act("record_root_cause", root_cause="weather"), InvalidInput, "root_cause_invalid"),
        (None, act("log_attempt", outcome="emailed"), InvalidInput, "outcome_invalid"),
        (None, act("log_attempt", actor="   ", outcome="tried"), InvalidInput, "actor_missing"),
        (None, act("log_attempt", outcome="tried", note="x" * 2001), InvalidInput, "text_too_long"),
        ("closed", act("log_attempt", outcome="tried"), IllegalTransition, "closed"),
        ("closed", act("claim"), IllegalTransition, "closed"),
        ("closed", act("record_root_cause", root_cause="pricing"), IllegalTransition, "closed"),
    ],
)
def test_an_illegal_move_is_refused_with_its_reason_and_changes_nothing(engine, wave, setup, action, error, code):
    w = wave.wave_id
    if setup == "closed":
        _closed(engine, w)
    elif setup:
        followups.log_attempt(engine, w, "C1", "ana", setup, at(1), RULES)
    before = state(engine, w)
    with pytest.raises(error) as refused:
        action(engine, w)
    assert refused.value.code == code and str(refused.value)
    assert state(engine, w) == before


MOVES = {  # each action of the form, with valid input
    "claim": lambda e, w, c, t: followups.claim(e, w, c, "ana", t, RULES),
    "release": lambda e, w, c, t: followups.release(e, w, c, "ana", t, RULES),
    "attempt": lambda e, w, c, t: followups.log_attempt(e, w, c, "ana", "tried", t, RULES),
    "attempt_reached": lambda e, w, c, t: followups.log_attempt(e, w, c, "ana", "reached", t, RULES),
    "unreachable": lambda e, w, c, t: followups.mark_unreachable(e, w, c, "ana", t, RULES),
    "root_cause": lambda e, w, c, t: followups.record_root_cause(e, w, c, "ana", "pricing", t, RULES),
    "close": lambda e, w, c, t: followups.close(e, w, c, "ana", True, t, RULES),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(st.sampled_from(sorted(MOVES)), min_size=1, max_size=12))
def test_any_sequence_of_moves_keeps_to_the_transitions_and_the_form_offers_what_is_allowed(engine, tmp_path, sequence):
    """Whatever people press, in any order: a move that succeeds goes along `TRANSITIONS` (or stays),
    one refused changes nothing, and a move refused for its state is one the form does not offer."""
    contact_id = f"P{next(_examples)}"
    wave = seed_wave(engine, tmp_path, [contact_id], name=f"W{contact_id}")
    open_followup(engine, wave.wave_id, contact_id, T0)
    for step, name in enumerate(sequence):
        before = followups.load(engine, wave.wave_id, contact_id)
        offered = followups.allowed_actions(before["status"])
        try:
            after = MOVES[name](engine, wave.wave_id, contact_id, at(1 + step))
        except IllegalTransition:
            assert name.removesuffix("_reached") not in offered
            assert followups.load(engine, wave.wave_id, contact_id) == before
            continue
        except InvalidInput as refused:  # valid input: only "nobody is calling" or "no root cause yet"
            assert refused.code in ("not_claimed", "root_cause_missing")
            assert followups.load(engine, wave.wave_id, contact_id) == before
            continue
        assert name.removesuffix("_reached") in offered
        moved = (before["status"], after["status"])
        assert moved[0] == moved[1] or moved[1] in followups.TRANSITIONS[moved[0]] or followups.path_between(*moved)


_examples = itertools.count()


def test_the_error_of_an_illegal_transition_says_what_is_allowed(engine, wave):
    followups.log_attempt(engine, wave.wave_id, "C1", "ana", "reached", at(1), RULES)
    with pytest.raises(IllegalTransition, match=r"cannot mark unreachable a follow-up that is reached \(allowed"):
        followups.mark_unreachable(engine, wave.wave_id, "C1", "ana", at(2), RULES)


# --- two people, one customer -------------------------------------------------------------------


def test_while_one_person_calls_nobody_else_can_log_a_call_until_they_log_theirs(engine, wave):
    w = wave.wave_id
    followups.claim(engine, w, "C1", "ana@vendor.example", at(1), RULES)
    with pytest.raises(AlreadyClaimed, match=r"ana@vendor\.example is calling since 09:00 UTC") as taken:
        followups.claim(engine, w, "C1", "ben@vendor.example", at(1.25), RULES)
    assert taken.value.details["by"] == "ana@vendor.example" and taken.value.details["since"] == at(1)
    for act in (
        lambda: followups.log_attempt(engine, w, "C1", "ben@vendor.example", "tried", at(1.3), RULES),
        lambda: followups.release(engine, w, "C1", "ben@vendor.example", at(1.3), RULES),
    ):
        with pytest.raises(AlreadyClaimed):
            act()
    # The claimant (whatever the case of her address) logs her call, which ends her claim.
    followups.log_attempt(engine, w, "C1", "ANA@vendor.example", "call_back_later", at(1.5), RULES)
    followups.claim(engine, w, "C1", "ben@vendor.example", at(2), RULES)
    assert state(engine, w)["claimed_by"] == "ben@vendor.example"


def test_a_forgotten_claim_runs_out_after_the_rules_claim_minutes(engine, wave):
    w = wave.wave_id
    followups.claim(engine, w, "C1", "ana", at(1), RULES)
    with pytest.raises(AlreadyClaimed):
        followups.claim(engine, w, "C1", "ben", at(1) + RULES.claim_ttl - dt.timedelta(seconds=1), RULES)
    followups.claim(engine, w, "C1", "ben", at(1) + RULES.claim_ttl, RULES)
    assert state(engine, w)["claimed_by"] == "ben"


def test_a_change_computed_from_an_old_revision_is_refused(engine, wave):
    w = wave.wave_id
    seen = state(engine, w)["revision"]
    followups.log_attempt(engine, w, "C1", "ana", "tried", at(1), RULES, revision=seen)
    with pytest.raises(StaleFollowup):
        followups.log_attempt(engine, w, "C1", "ben", "reached", at(1.1), RULES, revision=seen)
    assert state(engine, w)["status"] == "contacting" and len(log_of(engine, w)) == 1


def test_of_many_people_claiming_at_the_same_moment_exactly_one_gets_the_call(engine, wave):
    people = [f"agent{i}@vendor.example" for i in range(8)]
    start, results = threading.Barrier(len(people)), {}

    def try_claim(actor: str) -> None:
        start.wait()
        try:
            followups.claim(engine, wave.wave_id, "C2", actor, at(1), RULES, revision=0)
            results[actor] = "won"
        except (AlreadyClaimed, StaleFollowup) as exc:
            results[actor] = exc.code

    threads = [threading.Thread(target=try_claim, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert Counter(results.values())["won"] == 1, results
    winner = next(a for a, r in results.items() if r == "won")
    assert state(engine, wave.wave_id, "C2")["claimed_by"] == winner
    assert len(log_of(engine, wave.wave_id, "C2")) == 1


# --- root cause and incentive -------------------------------------------------------------------


def test_incentives_are_reproducible_spread_over_the_variants_and_follow_the_documented_hash():
    variants = ("none", "service_credit", "priority_support")
    picks = [followups.assign_incentive("test-w1", f"C{i}", variants) for i in range(900)]
    assert picks == [followups.assign_incentive("test-w1", f"C{i}", variants) for i in range(900)]
    assert all(240 <= n <= 360 for n in Counter(picks).values()), Counter(picks)  # about 300 each
    digest = hashlib.sha256(b"test-w1\x00C7").digest()
    assert picks[7] == variants[int.from_bytes(digest[:8], "big") % 3]


def test_the_first_root_cause_assigns_the_incentive_once_and_a_correction_keeps_it(engine, wave):
    w = wave.wave_id
    followups.log_attempt(engine, w, "C1", "ana", "reached", at(1), RULES)
    first = followups.record_root_cause(engine, w, "C1", "ana", "product_quality", at(2), RULES)
    expected = followups.assign_incentive(w, "C1", RULES.root_causes["product_quality"].incentives)
    assert first["incentive"] == expected and first["incentive_root_cause"] == "product_quality"
    assert first["rules_version"] == RULES.version and first["incentive_at"] == at(2)
    corrected = followups.record_root_cause(engine, w, "C1", "ana", "other", at(3), RULES, other_text="Okta SSO")
    stored = state(engine, w)
    assert corrected["root_cause"] == stored["root_cause"] == "other" and stored["root_cause_other"] == "Okta SSO"
    assert stored["incentive"] == expected and stored["incentive_root_cause"] == "product_quality"
    assert stored["incentive_at"] == at(2)


def test_the_shipped_rules_are_valid_and_every_root_cause_tests_a_control_arm():
    assert "other" in RULES.root_causes and RULES.root_causes["other"].requires_text
    assert all("none" in cause.incentives for cause in RULES.root_causes.values())
    assert RULES.crm_status_map["completed"] == "closed"


def test_broken_rules_are_refused_with_every_problem(tmp_path):
    broken = {
        "version": 0,
        "incentives": {"credit": "Credit"},
        "root_causes": {
            "pricing": {"label": "Pricing", "incentives": ["credit", "gift"]},
            "other": {"label": "Other", "incentives": ["credit"]},
            "Bad Id": {"label": "x", "incentives": ["credit"]},
        },
        "crm_status_map": {"Completed": "done"},
        "colour": "blue",
    }
    with pytest.raises(followups.FollowupRulesError) as refused:
        followups.parse_rules(broken)
    problems = " | ".join(refused.value.problems)
    for expected in (
        "unknown key(s) ['colour']",
        "version must be a whole number",
        "the control arm `none` (no incentive) is missing",
        "root_causes.pricing.incentives: unknown incentive(s) ['gift']",
        "root_causes.pricing.incentives: the control arm `none` must be one of the variants",
        "'Bad Id' is not an id",
        "`other` must exist, with requires_text: true",
        "crm_status_map.Completed: 'done' is not a state",
    ):
        assert expected in problems
    twice = tmp_path / "twice.yaml"
    twice.write_text("version: 1\nversion: 2\n", encoding="utf-8")
    with pytest.raises(followups.FollowupRulesError, match="given twice"):
        followups.load_rules(twice)


def test_a_crm_status_no_stays_a_status_not_a_boolean(tmp_path):
    rules = tmp_path / "followups.yaml"
    shipped = (PROJECT_ROOT / "rules" / "followups.yaml").read_text(encoding="utf-8")
    rules.write_text(shipped + "  No: unreachable\n  yes: reached\n", encoding="utf-8")
    crm_status_map = followups.load_rules(rules).crm_status_map
    assert (crm_status_map["no"], crm_status_map["yes"]) == ("unreachable", "reached")


# --- the internal follow-up form, over HTTP -----------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REVISION = re.compile(r'name="revision" value="(\d+)"')


class Caller:
    """One person's browser on the follow-up form (own cookies)."""

    def __init__(self, url: str, actor: str) -> None:
        self.url, self.actor, self.session = url, actor, requests.Session()

    def open(self) -> requests.Response:
        return self.session.get(self.url, timeout=10)

    def do(self, action: str, **fields: str) -> requests.Response:
        page = self.open().text
        form = {"csrf_token": CSRF.search(page)[1], "revision": REVISION.search(page)[1], "actor": self.actor}
        return self.session.post(self.url, data={**form, "action": action, **fields}, timeout=10)


@pytest.fixture
def form(engine, tmp_path):
    """The survey app serving the follow-up of C1, whose comment is hostile HTML."""
    wave = seed_wave(engine, tmp_path, ["C1"])
    open_followup(engine, wave.wave_id, "C1", storage.utcnow() - dt.timedelta(hours=2), 2, HOSTILE)
    with SurveyServer(engine, FormSettings()) as server:
        token = signed_links.sign("followup", wave.wave_id, "C1", storage.utcnow() + dt.timedelta(days=1))
        yield server, f"{server.base_url}/followup/{token}", wave


def test_the_form_shows_the_customer_escaped_and_a_whole_loop_can_be_worked_through_it(engine, form):
    server, url, wave = form
    ana = Caller(url, "ana@vendor.example")
    page = ana.open()
    assert page.status_code == 200 and "Person C1" in page.text and "Account C1" in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<script" not in page.text and "<img" not in page.text and "style=" not in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert 'value="csm@vendor.example"' in page.text  # the owner is the default caller
    assert requests.get(f"{server.base_url}/assets/followup.css", timeout=10).ok

    claimed = ana.do("claim")
    assert claimed.history[0].status_code == 303 and "You are calling since" in claimed.text
    assert ana.do("attempt", outcome="reached", note="long talk").ok
    assert 'value="ana@vendor.example"' in ana.open().text  # remembered for the next action
    hostile_other = ana.do("root_cause", root_cause="other", root_cause_other=HOSTILE[:120])
    assert hostile_other.ok and "Root cause recorded." in hostile_other.text
    assert "&lt;script&gt;" in hostile_other.text and "<script" not in hostile_other.text
    assert "Incentive to offer" in hostile_other.text
    done = ana.do("close", recovered="yes")
    assert done.ok and "Loop closed." in done.text and "recovered" in done.text
    assert 'name="action"' not in done.text  # nothing left to do on a closed loop
    stored = state(engine, wave.wave_id)
    assert stored["status"] == "closed" and stored["recovered"] is True and stored["root_cause"] == "other"
    assert [e[1] for e in log_of(engine, wave.wave_id)] == ["claim", "attempt", "root_cause", "close"]
    assert {e["source"] for e in followups.events(engine, wave.wave_id, "C1")} == {"form"}


def test_a_second_person_sees_who_is_calling_and_cannot_log_a_call(engine, form):
    _, url, wave = form
    ana, ben = Caller(url, "ana@vendor.example"), Caller(url, "ben@vendor.example")
    ana.do("claim")
    ben.session.cookies.set("nps_followup_actor", "ben@vendor.example", path="/followup/")
    seen = ben.open().text
    since = state(engine, wave.wave_id)["claimed_at"]
    assert f"ana@vendor.example is calling since {since:%H:%M} UTC" in seen
    assert 'value="attempt"' not in seen
    refused = ben.do("attempt", outcome="tried")
    assert refused.status_code == 409 and "ana@vendor.example is calling this customer since" in refused.text
    assert state(engine, wave.wave_id)["status"] == "open"


def test_the_form_refuses_bad_input_stale_pages_forged_links_and_missing_csrf(engine, form):
    server, url, wave = form
    ana = Caller(url, "ana@vendor.example")
    unreachable = ana.do("unreachable")
    assert unreachable.status_code == 409 and "Log at least one call attempt" in unreachable.text
    no_outcome = ana.do("attempt")
    assert no_outcome.status_code == 422 and "Choose how the call went" in no_outcome.text
    page = ana.open().text
    old = {"csrf_token": CSRF.search(page)[1], "revision": REVISION.search(page)[1], "actor": "ana"}
    assert ana.do("attempt", outcome="tried").ok
    stale = ana.session.post(url, data={**old, "action": "attempt", "outcome": "tried"}, timeout=10)
    assert stale.status_code == 409 and "Someone changed this follow-up since you opened it" in stale.text
    no_csrf = requests.post(url, data={"action": "claim", "actor": "x", "revision": "1"}, timeout=10)
    assert no_csrf.status_code == 403 and "Please do it again" in no_csrf.text
    survey_link = f"{server.base_url}/followup/{signed_links.sign('survey', wave.wave_id, 'C1')}"
    unknown = f"{server.base_url}/followup/{signed_links.sign('followup', wave.wave_id, 'NOBODY')}"
    for bad in (url[:-3] + "xyz", survey_link, unknown):
        assert requests.get(bad, timeout=10).status_code == 404
    expired = signed_links.sign("followup", wave.wave_id, "C1", storage.utcnow() - dt.timedelta(minutes=1))
    assert requests.get(f"{server.base_url}/followup/{expired}", timeout=10).status_code == 410
    assert len(log_of(engine, wave.wave_id)) == 1


@pytest.mark.browser
def test_the_form_reads_right_in_chromium_and_the_hostile_comment_stays_text(engine, form, browser):
    _, url, wave = form
    w, now = wave.wave_id, storage.utcnow()
    followups.log_attempt(
        engine, w, "C1", "ana@vendor.example", "tried", now - dt.timedelta(hours=1), RULES, note="voicemail"
    )
    followups.claim(engine, w, "C1", "ben@vendor.example", now, RULES)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 800, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    assert "ben@vendor.example is calling since" in page.inner_text("body")
    assert page.inner_text(".comment") == HOSTILE and page.locator(".comment img").count() == 0
    badge = page.evaluate("getComputedStyle(document.querySelector('.badge')).backgroundColor")
    assert badge not in ("rgba(0, 0, 0, 0)", "transparent"), "the stylesheet was not applied"
    page.screenshot(path=SCREENSHOTS / "followup-form-claimed.png", full_page=True)
    followups.log_attempt(engine, w, "C1", "ben@vendor.example", "reached", now, RULES)
    page.goto(url)
    assert page.locator("select#root_cause option").count() == len(RULES.root_causes) + 1
    page.screenshot(path=SCREENSHOTS / "followup-form-reached.png", full_page=True)
    page.close()
    assert dialogs == []


# --- the SLA sweep ------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_sla_sweep_escalates_each_overdue_followup_once_to_its_target(database, request, tmp_path, smtp):
    """Known answers at 2026-03-10 12:00 UTC: S1 (own SLA passed) -> boss; S4 (SLA passed, no target)
    and S5 (no SLA; 2 US business days after Mon 03-02 08:00 = Wed 03-04 08:00) -> the wave's CS ops.
    S2 (SLA later), S3 (already contacted) and S6 (opened Mon 03-09, due Wed 03-11) are not escalated."""
    engine = request.getfixturevalue("engine" if database == "sqlite" else "pg_engine")
    wave = seed_wave(engine, tmp_path, ["S1", "S2", "S3", "S4", "S5", "S6"])
    w, now = wave.wave_id, dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    sla = {
        "S1": (dt.datetime(2026, 3, 5, 17, tzinfo=dt.UTC), "boss@vendor.example"),
        "S2": (dt.datetime(2026, 3, 20, 17, tzinfo=dt.UTC), "boss@vendor.example"),
        "S3": (dt.datetime(2026, 3, 5, 17, tzinfo=dt.UTC), "boss@vendor.example"),
        "S4": (dt.datetime(2026, 3, 5, 17, tzinfo=dt.UTC), None),
    }
    for contact_id in ("S1", "S2", "S3", "S4", "S5", "S6"):
        created = dt.datetime(2026, 3, 9, 8, tzinfo=dt.UTC) if contact_id == "S6" else T0
        open_followup(engine, w, contact_id, created, comment=f"comment of {contact_id}")
    for contact_id, (due, target) in sla.items():
        storage.execute(
            engine,
            "UPDATE followups SET sla_due_at = :d, escalation_target = :t WHERE contact_id = :c",
            {"d": due, "t": target, "c": contact_id},
        )
    followups.log_attempt(engine, w, "S3", "ana", "tried", at(30), RULES)

    with SmtpTransport() as transport:
        first = sla_sweep.sweep_sla(engine, transport, RULES, now)
        storage.execute(engine, "UPDATE followups SET escalated_at = NULL")  # as if the run died after sending
        again = sla_sweep.sweep_sla(engine, transport, RULES, now + dt.timedelta(hours=1))
        third = sla_sweep.sweep_sla(engine, transport, RULES, now + dt.timedelta(hours=2))

    assert first == {"overdue": 3, "escalated": 3, "without_target": 0}
    assert again["escalated"] == 3 and third == {"overdue": 0, "escalated": 0, "without_target": 0}
    sent = [m for m in smtp.spool.messages() if m["X-NPS-Kind"] == "followup_escalation"]
    got = sorted((m["To"], re.search(r"comment of (S\d)", m.get_body(("plain",)).get_content())[1]) for m in sent)
    assert got == [("boss@vendor.example", "S1"), ("csops@vendor.example", "S4"), ("csops@vendor.example", "S5")]
    s1 = next(m for m in sent if m["To"] == "boss@vendor.example")
    assert "Follow-up overdue: Person S1" in s1["Subject"] and "/followup/" in s1.get_body(("plain",)).get_content()
    escalated = storage.fetch_all(
        engine, "SELECT contact_id, escalated_to FROM followups WHERE escalated_at IS NOT NULL ORDER BY contact_id"
    )
    assert [(r["contact_id"], r["escalated_to"]) for r in escalated] == [
        ("S1", "boss@vendor.example"),
        ("S4", "csops@vendor.example"),
        ("S5", "csops@vendor.example"),
    ]
    assert state(engine, w, "S1")["status"] == "open"  # an escalation is not a contact
    assert [e[1] for e in log_of(engine, w, "S1")] == ["escalation", "escalation"]  # recorded again, sent once


# --- the CRM status sync ------------------------------------------------------------------------


def _with_crm_tasks(engine, w: str, tasks: dict[str, str]) -> None:
    if not crm_sync.has_column(engine, "followups", "crm_task_id"):  # migration 008 not there yet
        storage.execute(engine, "ALTER TABLE followups ADD COLUMN crm_task_id VARCHAR(254)")
    for contact_id, task_id in tasks.items():
        storage.execute(
            engine,
            "UPDATE followups SET crm_task_id = :t WHERE wave_id = :w AND contact_id = :c",
            {"t": task_id, "w": w, "c": contact_id},
        )


def test_crm_task_statuses_move_followups_forward_only(engine, tmp_path, httpserver, monkeypatch):
    """`GET /crm/tasks/<id>` answers `{"id": ..., "status": ...}` (404: no such task)."""
    wave = seed_wave(engine, tmp_path, ["K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8"])
    w = wave.wave_id
    for contact_id in ("K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8"):
        open_followup(engine, w, contact_id, T0)
    followups.log_attempt(engine, w, "K2", "ana", "tried", at(1), RULES)
    followups.log_attempt(engine, w, "K3", "ana", "reached", at(1), RULES)
    followups.log_attempt(engine, w, "K6", "ana", "tried", at(1), RULES)
    _with_crm_tasks(engine, w, {f"K{i}": f"T-{i}" for i in range(1, 9)})
    statuses = {"T-1": "In Progress", "T-2": "Completed", "T-3": "Not Started", "T-5": "Escalated", "T-6": "Deferred"}
    for task_id, status in statuses.items():
        httpserver.expect_request(f"/crm/tasks/{task_id}", method="GET").respond_with_json(
            {"id": task_id, "status": status}
        )
    httpserver.expect_request("/crm/tasks/T-4", method="GET").respond_with_data("not found", status=404)
    httpserver.expect_request("/crm/tasks/T-7", method="GET").respond_with_data("bad id", status=400)
    httpserver.expect_request("/crm/tasks/T-8", method="GET").respond_with_data("<html>maintenance</html>")
    monkeypatch.setenv("AIRFLOW_CONN_NPS_CRM", json.dumps({"conn_type": "http", "host": httpserver.url_for("/crm")}))

    counts = crm_sync.run_crm_sync()
    # T-7 refused and T-8 not JSON: those two are skipped, the others still synced
    expected = {"checked": 8, "moved": 3, "unchanged": 1, "unknown_status": 1, "missing_task": 1, "refused": 2}
    assert counts == {**expected, "conflicts": 0}
    got = {c: state(engine, w, c)["status"] for c in ("K1", "K2", "K3", "K4", "K5", "K6")}
    assert got == {
        "K1": "contacting",  # open -> In Progress
        "K2": "closed",  # contacting -> Completed, through reached
        "K3": "reached",  # the CRM lags behind the call log: never moved back
        "K4": "open",  # the CRM has no such task
        "K5": "open",  # a status the rules do not map
        "K6": "unreachable",  # contacting -> Deferred
    }
    assert log_of(engine, w, "K2")[-1] == (2, "crm_sync", "Completed", "contacting", "closed")
    assert state(engine, w, "K2")["recovered"] is None and state(engine, w, "K3")["crm_status"] == "Not Started"
    again = crm_sync.run_crm_sync()  # nothing moves twice; the closed one is no longer asked about
    assert again["moved"] == 0 and again["checked"] == 7


@pytest.mark.parametrize("status", [408, 425, 429, 503])
def test_a_crm_answer_worth_retrying_is_a_transient_failure(httpserver, monkeypatch, status):
    httpserver.expect_request("/crm/tasks/T-1", method="GET").respond_with_data("busy", status=status)
    monkeypatch.setenv("AIRFLOW_CONN_NPS_CRM", json.dumps({"conn_type": "http", "host": httpserver.url_for("/crm")}))
    with pytest.raises(TransientFailure, match=f"CRM answered {status} for task T-1"):
        crm_sync.crm_status_fetcher()("T-1")


def test_the_crm_sync_is_skipped_without_a_connection_or_a_task_column(engine, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NPS_CRM", raising=False)
    assert crm_sync.run_crm_sync() == {"skipped": "no nps_crm connection"}
    if crm_sync.has_column(engine, "followups", "crm_task_id"):
        storage.execute(engine, "ALTER TABLE followups DROP COLUMN crm_task_id")
    counts = crm_sync.sync_crm(engine, lambda task_id: pytest.fail("nothing to ask"), RULES, T0)
    assert counts["checked"] == 0
