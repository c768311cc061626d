"""The `nps_wave` trigger form as CS ops meets it: the real Airflow UI (api-server, dag-processor and
scheduler on a SQLite metadata DB), signed in through the login page, in Debian's Chromium.

Only the required fields are filled (wave name, contacts file, open and close times); every other
field keeps its default, the optional ones empty. *Trigger* must be enabled, the run must start and
plan the wave. Screenshots of the filled form (the run parameters, and the raw-data drops section
with its pick lists) are written to the test's tmp folder and to `var/screenshots/trigger_form/`
(run with -s to see the phase durations).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from include.nps.core import storage
from include.nps.core.storage import PROJECT_ROOT
from tests.airflow_cluster import ADMIN_PASSWORD, ADMIN_USER, AirflowCluster, sqlite_url, wait_until
from tests.factories import contact, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
DAG_ID = "nps_wave"
COMPONENTS = ("api-server", "dag-processor", "scheduler")  # no triggerer: the run is only started
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots" / "trigger_form"
PHASES: dict[str, float] = {}  # seconds of each phase, printed at the end
PICK_LISTS = {
    "drop_channels": (
        "Deliver drops by",
        "email (attached, or linked above the size limit)",
        "storage (drop location)",
    ),
    "drop_formats": ("File formats", "XLSX (Excel)", "CSV (UTF-8 with BOM)"),
}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> AirflowCluster:
    """The Airflow processes this test needs, the nps_wave DAG parsed."""
    home = tmp_path_factory.mktemp("trigger-form")
    cluster = AirflowCluster(home / "airflow", sqlite_url(home / "airflow"), {"NPS_HOME": str(home / "nps")})
    started = time.monotonic()
    try:
        cluster.migrate()
        cluster.start(*COMPONENTS)
        wait_until(lambda: cluster.api("GET", f"/dags/{DAG_ID}").ok, 120, "nps_wave parsed by the dag-processor")
        PHASES["airflow up"] = time.monotonic() - started
        yield cluster
    finally:
        cluster.stop()


def _field(dialog, title: str):
    """The form row whose label reads `title`."""
    return dialog.locator("[data-scope=field][data-part=root]").filter(has=dialog.page.locator("label", has_text=title))


def _sign_in(page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.locator("input[name=username]").fill(ADMIN_USER)
    page.locator("input[name=password]").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/", timeout=30_000)


def _pick_time(dialog, title: str, moment: dt.datetime) -> None:
    """Set a date-time field through its picker (date and time boxes, in UTC), as a person does."""
    trigger = _field(dialog, title).get_by_test_id("datetime-input")
    content_id = trigger.get_attribute("id").replace(":trigger", ":content")
    trigger.click()
    picker = dialog.page.locator(f"[id='{content_id}']")
    picker.get_by_placeholder("YYYY/MM/DD").fill(f"{moment:%Y/%m/%d}")
    picker.get_by_placeholder("HH:mm").fill(f"{moment:%H:%M}")
    dialog.page.keyboard.press("Escape")
    assert trigger.inner_text() == f"{moment:%b %d, %Y %H:%M}"


def _assert_pick_lists_are_multi_selects(dialog) -> None:
    """Each fixed-choice list is a multi-select offering exactly its choices, not a free-text box."""
    from playwright.sync_api import expect

    _field(dialog, "Deliver drops by").scroll_into_view_if_needed()
    for name, (title, chosen, other) in PICK_LISTS.items():
        field = _field(dialog, title)
        expect(dialog.locator(f"textarea#element_{name}, input[type=text]#element_{name}")).to_have_count(0)
        expect(field.locator(f"input[type=hidden][name=element_{name}]")).to_have_value(chosen.split(" ")[0].lower())
        expect(field).to_contain_text(chosen)  # the default, as a chosen item
        select = field.get_by_role("combobox")
        expect(select).to_have_attribute("aria-label", "Select one or multiple values")
        select.click()
        expect(dialog.page.get_by_role("option")).to_have_text([other])  # the choices left to add
        select.blur()  # closes the menu (Escape would close the whole dialog)
        expect(dialog.page.get_by_role("option")).to_have_count(0)


def _screenshot(page, dialog, path: Path) -> None:
    """The whole dialog, every row visible (a viewport as tall as the form), then the viewport back."""
    size = page.viewport_size
    height = dialog.evaluate("e => e.scrollHeight") + 200
    page.set_viewport_size({"width": size["width"], "height": height})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def test_a_wave_starts_from_the_trigger_form_with_only_the_required_fields(browser, airflow, tmp_path):
    from playwright.sync_api import expect

    started = time.monotonic()
    contacts = write_csv(tmp_path / "contacts.csv", [contact("C1"), contact("C2", "A2")])
    opens = (dt.datetime.now(dt.UTC) + dt.timedelta(days=8)).replace(hour=15, minute=0, second=0, microsecond=0)
    closes = opens + dt.timedelta(days=14)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        _sign_in(page, airflow.base_url)
        page.goto(f"{airflow.base_url}/dags/{DAG_ID}")
        page.get_by_test_id("trigger-dag-button").click()
        dialog = page.locator("[data-scope=dialog][data-part=content]")  # the date pickers are dialogs too
        submit = dialog.get_by_test_id("trigger-dag-submit")
        expect(submit).to_be_disabled()  # the four required fields are empty

        dialog.locator("#element_wave_name").fill("2027-Q1")
        dialog.locator("#element_audience_csv").fill(str(contacts))
        _pick_time(dialog, "Survey opens", opens)
        _pick_time(dialog, "Survey closes", closes)
        expect(submit).to_be_enabled()
        _screenshot(page, dialog, tmp_path / "trigger_form.png")
        dialog.get_by_role("button", name="Raw-data drops").click()  # the section holding the pick lists
        expect(dialog.locator("#element_drop_location")).to_have_value("")
        expect(dialog.locator("#element_drop_storage_conn_id")).to_have_value("")
        _assert_pick_lists_are_multi_selects(dialog)
        expect(submit).to_be_enabled()
        _screenshot(page, dialog, tmp_path / "trigger_form_drops.png")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot in ("trigger_form.png", "trigger_form_drops.png"):
            (SCREENSHOTS / shot).write_bytes((tmp_path / shot).read_bytes())

        with page.expect_response(
            lambda r: r.url.endswith(f"/dags/{DAG_ID}/dagRuns") and r.request.method == "POST"
        ) as sent:
            submit.click()
        assert sent.value.status == 200, sent.value.text()
        run = sent.value.json()
    finally:
        page.close()
    PHASES["form"] = time.monotonic() - started

    conf = run["conf"]
    assert (conf["wave_name"], conf["audience_csv"]) == ("2027-Q1", str(contacts))
    assert dt.datetime.fromisoformat(conf["open_at"]) == opens
    assert dt.datetime.fromisoformat(conf["close_at"]) == closes
    assert conf["drop_location"] is None and conf["drop_storage_conn_id"] is None
    assert (conf["drop_channels"], conf["drop_formats"]) == (["email"], ["xlsx"])
    assert run["triggered_by"] == "ui" and run["triggering_user_name"] == ADMIN_USER

    def planned() -> str | None:
        states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(DAG_ID, run["dag_run_id"])}
        if states.get("plan_wave") == "failed":
            raise AssertionError(airflow.failed_task_logs(DAG_ID, run["dag_run_id"]))
        return states.get("plan_wave") == "success" and "planned"

    wait_until(planned, 90, "plan_wave of the run started from the form", every=1)
    PHASES["run planned"] = time.monotonic() - started - PHASES["form"]
    assert airflow.dag_run(DAG_ID, run["dag_run_id"])["state"] in ("queued", "running")
    engine = storage.make_engine(f"sqlite:///{Path(airflow.env['NPS_HOME']) / 'nps.db'}")
    wave = storage.fetch_one(engine, "SELECT run_id, status, open_at FROM waves WHERE wave_id = 'customer-nps-2027-q1'")
    engine.dispose()
    assert wave["run_id"] == run["dag_run_id"] and wave["status"] == "planned"
    assert storage.as_utc(wave["open_at"]) == opens
    print("\n" + "  ".join(f"{name} {seconds:.0f} s" for name, seconds in PHASES.items()))
