"""The wave calendar: a good file loads into the exact conf the trigger form would send, and each
bad file is refused with every problem named by file, wave, field and reason."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from include.nps.core.storage import PROJECT_ROOT
from include.nps.planner import wave_calendar

NOW = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC)  # a Monday
Q1 = """\
  - wave_name: 2027-Q1
    audience_csv: /data/q1.csv
    open_at: 2027-02-01 09:00
    close_at: 2027-02-15 17:00
"""
GOOD = f"""\
defaults:
  product: Acme Cloud
  sales_recipients: [sales-ops@acme.example]
  cs_ops_recipients: [cs-ops@acme.example]
waves:
{Q1}\
  - wave_name: 2027-Q1
    program: customer-nps-japan
    country: JP
    audience_csv: /data/jp.csv
    open_at: 2027-02-08T10:00:00+09:00
    close_at: 2027-02-19 09:00:00
    pillar_questions:
      - id: support
        text: How satisfied are you with our support?
        scale: 1-5
        translations:
          ja: サポートにどの程度満足していますか？
    flash_at: 2027-02-25 01:00
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "waves.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_good_calendar_loads_into_the_forms_conf(tmp_path: Path):
    first, japan = wave_calendar.load_calendar(write(tmp_path, GOOD), NOW)

    assert first.label == "wave 1 '2027-Q1' (customer-nps)"
    assert first.wave_id == "customer-nps-2027-q1" and first.run_id == "wave__customer-nps-2027-q1"
    assert first.conf == {
        "product": "Acme Cloud",
        "sales_recipients": ["sales-ops@acme.example"],
        "cs_ops_recipients": ["cs-ops@acme.example"],
        "wave_name": "2027-Q1",
        "audience_csv": "/data/q1.csv",
        "open_at": "2027-02-01T09:00:00+00:00",
        "close_at": "2027-02-15T17:00:00+00:00",
    }
    # Pre-announcement 3 business days before open (Wed 27 Jan); the run starts one before that;
    # both at 09:00 in New York (the open's 04:00 there moved to the opening of business hours).
    assert first.milestones["preannounce"] == dt.datetime(2027, 1, 27, 14, tzinfo=dt.UTC)
    assert first.start_at == dt.datetime(2027, 1, 26, 14, tzinfo=dt.UTC)
    # Times with an offset are turned into UTC; an override is kept; Japan's own business days count.
    assert japan.conf["open_at"] == "2027-02-08T01:00:00+00:00"
    assert japan.conf["close_at"] == "2027-02-19T09:00:00+00:00"
    assert japan.conf["flash_at"] == "2027-02-25T01:00:00+00:00"
    assert japan.conf["pillar_questions"][0]["translations"] == {"ja": "サポートにどの程度満足していますか？"}
    assert japan.wave.country == "JP" and japan.milestones["flash"] == dt.datetime(2027, 2, 25, 1, tzinfo=dt.UTC)


def test_norway_is_a_country_not_a_no(tmp_path: Path):
    (wave,) = wave_calendar.load_calendar(write(tmp_path, f"waves:\n{Q1}    country: NO\n"), NOW)
    assert wave.conf["country"] == "NO"


def test_optional_fields_may_be_left_empty_as_in_the_trigger_form(tmp_path: Path):
    empty = "    drop_location:\n    drop_storage_conn_id:\n    sales_recipients:\n    drop_allow_list:\n"
    (wave,) = wave_calendar.load_calendar(write(tmp_path, f"waves:\n{Q1}{empty}"), NOW)
    assert (wave.wave.drop_location, wave.wave.drop_storage_conn_id, wave.wave.sales_recipients) == ("", "", [])
    assert "drop_location" not in wave.conf  # the run gets the form's own default


def test_waves_that_have_started_stay_in_the_file_as_history(tmp_path: Path):
    later = NOW + dt.timedelta(days=40)  # wave 1 has opened (and closed)
    path = write(tmp_path, f"waves:\n{Q1}")
    (wave,) = wave_calendar.load_calendar(path, later, started={"customer-nps-2027-q1"})
    assert wave.wave_id == "customer-nps-2027-q1"
    with pytest.raises(wave_calendar.CalendarFileError, match="is in the past and the wave was never started"):
        wave_calendar.load_calendar(path, later)


def test_the_shipped_calendar_is_valid():
    planned = wave_calendar.load_calendar(
        wave_calendar.DEFAULT_CALENDAR, dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    )  # fixed time: the file's dates are absolute
    assert wave_calendar.DEFAULT_CALENDAR == PROJECT_ROOT / "calendar" / "waves.yaml"
    assert len(planned) >= 2 and len({w.wave_id for w in planned}) == len(planned)


def test_the_calendar_path_comes_from_the_variable_then_the_environment(monkeypatch):
    monkeypatch.delenv(wave_calendar.CALENDAR_ENV, raising=False)
    assert wave_calendar.calendar_path(None) == wave_calendar.DEFAULT_CALENDAR
    monkeypatch.setenv(wave_calendar.CALENDAR_ENV, "/srv/nps/waves.yaml")
    assert wave_calendar.calendar_path("") == Path("/srv/nps/waves.yaml")
    assert wave_calendar.calendar_path("plans/2027.yaml") == PROJECT_ROOT / "plans" / "2027.yaml"


def wave(name: str = "2027-Q1", open_at: str = "2027-02-01 09:00", close_at: str = "2027-02-15 17:00", **more) -> str:
    """One wave entry of the `waves:` list."""
    fields = {"wave_name": name, "audience_csv": "/data/q1.csv", "open_at": open_at, "close_at": close_at, **more}
    lines = [f"{key}: {value}" for key, value in fields.items() if value is not None]
    return "  - " + "\n    ".join(lines) + "\n"


W1 = "wave 1 '2027-Q1' (customer-nps)"
# (case id, file content, every problem reported, `{file}` for the file's path)
BAD_FILES = [
    (
        "overlap-in-one-program",
        "waves:\n"
        + wave()
        + wave("2027-Q1-extra", "2027-02-10 09:00", "2027-02-20 17:00")
        + wave("2027-Q1", "2027-02-10 09:00", "2027-02-20 17:00", program="partner-nps"),
        [
            "{file}: wave 2 '2027-Q1-extra' (customer-nps): open_at 2027-02-10 09:00 UTC to close_at "
            "2027-02-20 17:00 UTC overlaps wave 1 '2027-Q1' (customer-nps) (2027-02-01 09:00 UTC to "
            "2027-02-15 17:00 UTC); waves of one program must not overlap"
        ],
    ),
    (
        "close-before-open",
        "waves:\n" + wave(close_at="2027-01-20 17:00"),
        ["{file}: " + W1 + ": close_at 2027-01-20 17:00 UTC is before open_at 2027-02-01 09:00 UTC"],
    ),
    (
        "close-at-open",
        "waves:\n" + wave(close_at="2027-02-01 09:00"),
        ["{file}: " + W1 + ": close_at 2027-02-01 09:00 UTC is the same time as open_at 2027-02-01 09:00 UTC"],
    ),
    (
        "unknown-country",
        "waves:\n" + wave(country="XX"),
        [
            "{file}: " + W1 + ": country 'XX' has no business-day calendar: use a two-letter ISO country "
            "code such as US, DE or JP"
        ],
    ),
    (
        "country-not-a-code",
        "waves:\n" + wave(country="USA"),
        ["{file}: " + W1 + ": country: 'USA' does not match '^[A-Z]{{2}}$'"],
    ),
    (
        "past-open",
        "waves:\n" + wave(open_at="2027-01-04 09:00"),
        [
            "{file}: " + W1 + ": open_at 2027-01-04 09:00 UTC is in the past and the wave was never started: "
            "give it new dates, or remove it"
        ],
    ),
    (
        "duplicate-name-in-program",
        "waves:\n" + wave() + wave("2027 q1", "2027-05-03 09:00", "2027-05-17 17:00"),
        [
            "{file}: wave 2 '2027 q1' (customer-nps): wave_name gives the wave id 'customer-nps-2027-q1' of "
            "wave 1 '2027-Q1' (customer-nps); each wave of a program needs its own name"
        ],
    ),
    (
        "missing-required-field",
        "waves:\n  - wave_name: 2027-Q1\n    open_at: 2027-02-01 09:00\n    close_at:\n",
        [
            "{file}: " + W1 + ": missing required field 'audience_csv' (Contacts file)",
            "{file}: " + W1 + ": missing required field 'close_at' (Survey closes)",
        ],
    ),
    (
        "unknown-field",
        "waves:\n  - wave_name: 2027-Q1\n    audience_csv: /data/q1.csv\n    open_date: 2027-02-01 09:00\n"
        "    close_at: 2027-02-15 17:00\n    mood: cheerful\n",
        [
            "{file}: " + W1 + ": unknown field 'open_date'; did you mean 'open_at'?",
            "{file}: " + W1 + ": unknown field 'mood'; the fields are those of the nps_wave trigger form",
            "{file}: " + W1 + ": missing required field 'open_at' (Survey opens)",
        ],
    ),
    (
        "unknown-field-in-defaults",
        "defaults:\n  sendr: cs@acme.example\nwaves:\n" + wave(),
        ["{file}: defaults: unknown field 'sendr'; did you mean 'sender'?"],
    ),
    (
        "bad-yaml-syntax",
        "waves:\n  - wave_name: 2027-Q1\n    audience_csv: /data/q1.csv\n   open_at: 2027-02-01 09:00\n",
        [
            "{file}: line 4, column 4: not valid YAML: while parsing a block collection, expected <block end>, "
            "but found '<block mapping start>' (check the indentation of this line and the one above)"
        ],
    ),
    (
        "unclosed-quote",
        "waves:\n  - wave_name: '2027-Q1\n    audience_csv: /data/q1.csv\n",
        ["{file}: line 4, column 1: not valid YAML: while scanning a quoted scalar, found unexpected end of stream"],
    ),
    (
        "key-given-twice",
        "waves:\n" + wave() + "    open_at: 2027-02-02 09:00\n",
        ["{file}: line 6, column 5: not valid YAML: 'open_at' is given twice (first on line 4)"],
    ),
    (
        "waves-not-a-list",
        "waves:\n  wave_name: 2027-Q1\n  open_at: 2027-02-01 09:00\n",
        ["{file}: 'waves' must be a list of waves, each starting with '- wave_name:', not a mapping"],
    ),
    (
        "file-is-a-list",
        wave(),
        ["{file}: the file must be a mapping with a 'waves:' list (and optional 'defaults:'), not a list"],
    ),
    ("empty-file", "# nothing planned\n", ["{file}: the file is empty; it needs a 'waves:' list"]),
    (
        "unknown-top-level-key",
        "wave:\n" + wave(),
        [
            "{file}: unknown top-level key 'wave'; the file has 'defaults:' and 'waves:'",
            "{file}: no 'waves:' list",
        ],
    ),
    (
        "wave-not-a-mapping",
        "waves:\n  - 2027-Q1\n",
        ["{file}: wave 1: must be a mapping of fields, not '2027-Q1'"],
    ),
    (
        "bad-recipient-emails",
        "waves:\n" + wave(sales_recipients="[sales.acme.example, bob@acme]", cs_ops_recipients="[ops@acme.example]"),
        [
            "{file}: " + W1 + ": sales_recipients[0] 'sales.acme.example' is not exactly one email address like "
            "name@example.com",
            "{file}: " + W1 + ": sales_recipients[1] 'bob@acme' the domain 'acme' is not a full domain name like "
            "example.com",
        ],
    ),
    (
        "several-recipients-in-one-item",
        "waves:\n"
        + wave(
            sales_recipients='["x@evil.example,y@acme.example", "x@evil.example;y@acme.example", '
            '"x@evil.example y@acme.example", "x@evil.example\\ny@acme.example", "Evil <x@evil.example>"]'
        ),
        [
            "{file}: " + W1 + ": sales_recipients[0] 'x@evil.example,y@acme.example' holds a comma: give one "
            "address per item, each in its own item",
            "{file}: " + W1 + ": sales_recipients[1] 'x@evil.example;y@acme.example' holds a semicolon: give one "
            "address per item, each in its own item",
            "{file}: " + W1 + ": sales_recipients[2] 'x@evil.example y@acme.example' holds a space: give one "
            "address per item, each in its own item",
            "{file}: " + W1 + ": sales_recipients[3] 'x@evil.example\\ny@acme.example' holds a newline: give one "
            "address per item, each in its own item",
            "{file}: " + W1 + ": sales_recipients[4] 'Evil <x@evil.example>' has a display name, quotes or a "
            "comment: give the bare address only, like name@example.com",
        ],
    ),
    (
        "allow-list-entry-that-is-a-list",
        "waves:\n" + wave(drop_allow_list='["evil.example,acme.example", "*.acme.example"]'),
        [
            "{file}: " + W1 + ": drop_allow_list[0] 'evil.example,acme.example' holds a comma: give one address "
            "or domain per item, each in its own item",
            "{file}: " + W1 + ": drop_allow_list[1] '*.acme.example' holds a wildcard (*): list each "
            "domain itself (subdomains are not included)",
        ],
    ),
    (
        "sales-recipient-outside-the-allow-list",
        "waves:\n" + wave(drop_allow_list="[vendor.example]", sales_recipients="[x@evilvendor.example]"),
        [
            "{file}: " + W1 + ": sales_recipients[0] 'x@evilvendor.example' is not on "
            "the drop allow-list [vendor.example]: raw data only goes to listed addresses and whole domains"
        ],
    ),
    (
        "sender-not-an-address",
        "waves:\n" + wave(sender="Acme Customer Success", executive_sender='"CEO, Acme <ceo@acme.example>"'),
        [
            "{file}: " + W1 + ": sender 'Acme Customer Success' is not one address: write it like \"Acme Customer "
            'Success <cs@acme.example>" or cs@acme.example (put a display name with a comma in double quotes)',
            "{file}: " + W1 + ": executive_sender 'CEO, Acme <ceo@acme.example>' is not one address: write it "
            'like "Acme Customer Success <cs@acme.example>" or cs@acme.example (put a display name with a comma '
            "in double quotes)",
        ],
    ),
    (
        "drop-channel-not-offered",
        "waves:\n" + wave(drop_channels="[email, fax]", drop_formats="[]"),
        [
            "{file}: " + W1 + ": drop_channels[1]: 'fax' is not one of ['email', 'storage']",
            "{file}: " + W1 + ": drop_formats: [] should be non-empty",
        ],
    ),
    (
        "recipients-not-a-list",
        "waves:\n" + wave(cs_ops_recipients="cs-ops@acme.example"),
        ["{file}: " + W1 + ": cs_ops_recipients: 'cs-ops@acme.example' is not of type 'null', 'array'"],
    ),
    (
        "date-without-time",
        "waves:\n" + wave(open_at="2027-02-01"),
        ["{file}: " + W1 + ": open_at 2027-02-01 has no time of day: write it like 2027-02-01 09:00 (times are UTC)"],
    ),
    (
        "not-a-time",
        "waves:\n" + wave(close_at="mid February"),
        [
            "{file}: " + W1 + ": close_at 'mid February' is not a date and time: write it like 2027-02-01 09:00 "
            "(times are UTC)"
        ],
    ),
    (
        "name-read-as-a-number",
        "waves:\n" + wave(name="2027"),
        ["{file}: wave 1 '2027' (customer-nps): wave_name: 2027 is not of type 'string'; put it in quotes"],
    ),
    (
        "bad-pillar-scale",
        "waves:\n" + wave(pillar_questions="[{id: support, text: Our support, scale: 1-7}]"),
        ["{file}: " + W1 + ": pillar_questions[0].scale: '1-7' is not one of ['0-10', '1-5']"],
    ),
    (
        "question-mark-in-brackets",
        "waves:\n" + wave(pillar_questions="[{id: support, text: Happy?, scale: 1-5}]"),
        [
            "{file}: line 6, column 49: not valid YAML: while parsing a flow mapping, expected ',' or '}}', but "
            "got '?' (inside [...] or {{...}}, put text holding , ? : or # in quotes)"
        ],
    ),
    (
        "override-out-of-order",
        "waves:\n" + wave(flash_at="2027-02-10 09:00"),
        [
            "{file}: " + W1 + ": milestone 'close' (2027-02-15T17:00:00+00:00) falls after 'flash' "
            "(2027-02-10T09:00:00+00:00)"
        ],
    ),
    (
        "wave-id-too-long",
        "waves:\n" + wave(program="p" * 100, name="n" * 40),
        [
            "{file}: wave 1 '" + "n" * 40 + "' (" + "p" * 100 + "): program and wave_name make a wave id of 141 "
            "characters; the limit is 128"
        ],
    ),
    (
        "storage-drop-without-location",
        "waves:\n" + wave(drop_channels="[storage]"),
        ["{file}: " + W1 + ": drop_location is required when drops are delivered to storage"],
    ),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_calendar_is_refused_with_every_problem(tmp_path: Path, content: str, expected: list[str]):
    path = write(tmp_path, content)
    with pytest.raises(wave_calendar.CalendarFileError) as refused:
        wave_calendar.load_calendar(path, NOW)
    assert refused.value.problems == [line.format(file=path) for line in expected]
    assert str(refused.value).startswith(f"the wave calendar has {len(expected)} problem(s):\n  {path}: ")


def test_every_problem_of_the_file_is_reported_at_once(tmp_path: Path):
    content = (
        "waves:\n"
        + wave(country="XX")
        + wave("2027-Q2", "2027-05-03 09:00", "2027-04-20 09:00")
        + wave("2027-Q3", "2027-08-02 09:00", "2027-08-16 09:00", sales_recipients="[nobody]")
    )
    with pytest.raises(wave_calendar.CalendarFileError) as refused:
        wave_calendar.load_calendar(write(tmp_path, content), NOW)
    assert [p.split(": ")[1] for p in refused.value.problems] == [
        "wave 1 '2027-Q1' (customer-nps)",
        "wave 2 '2027-Q2' (customer-nps)",
        "wave 3 '2027-Q3' (customer-nps)",
    ]


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(wave_calendar.CalendarFileError, match=r"waves\.yaml: no such file"):
        wave_calendar.load_calendar(tmp_path / "waves.yaml", NOW)
