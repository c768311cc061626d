import datetime as dt

import pytest

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import audience, waves
from tests.factories import contact, planned_wave, write_csv


def test_bad_rows_are_quarantined_with_row_field_and_reason(engine, tmp_path):
    rows = [
        contact("C1"),
        contact("C2", email="not-an-email"),
        contact("C3", account_id=""),
        contact("C1", email="other@a1.example"),  # duplicate id
        contact("C5", email="c1@a1.example"),  # duplicate email
        contact("C6", vip="maybe"),
        contact("C7", locale="fr"),  # unsupported locale: loaded, in English
    ]
    path = write_csv(tmp_path / "contacts.csv", rows)
    wave = planned_wave(engine, path)
    result = audience.load_contacts(engine, wave.wave_id, path, max_rejected_share=1.0)
    assert (result.loaded, result.quarantined) == (2, 5)
    quarantined = storage.fetch_all(engine, "SELECT row_number, field, reason FROM quarantine ORDER BY row_number")
    assert {(q["row_number"], q["field"], q["reason"]) for q in quarantined} == {
        (3, "email", "not a valid email address"),
        (4, "account_id", "account_id is empty"),
        (5, "contact_id", "duplicate contact_id in the file (first in row 2)"),
        (6, "email", "duplicate email in the file (same address as row 2)"),
        (7, "vip", "vip must be true or false"),
    }
    locales = storage.fetch_all(engine, "SELECT contact_id, locale FROM contacts ORDER BY contact_id")
    assert locales == [{"contact_id": "C1", "locale": "en"}, {"contact_id": "C7", "locale": "en"}]


def test_missing_file_or_columns_stop_with_a_clear_error(tmp_path):
    with pytest.raises(audience.AudienceError, match="does not exist"):
        audience.read_contacts_csv(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("contact_id,email\nC1,a@b.example\n")
    with pytest.raises(audience.AudienceError, match=r"lacks required column.*name, account_id, account_name"):
        audience.read_contacts_csv(tmp_path / "bad.csv")


def test_a_byte_order_mark_and_spaces_are_tolerated(tmp_path):
    path = write_csv(tmp_path / "bom.csv", [contact("C1", name="  Aiko  ")], encoding="utf-8-sig")
    frame = audience.read_contacts_csv(path).frame
    assert frame.loc[0, "contact_id"] == "C1" and frame.loc[0, "name"] == "Aiko"


def test_snapshot_excludes_opted_out_bounced_and_recently_surveyed(engine, tmp_path):
    path = write_csv(tmp_path / "c.csv", [contact(f"C{i}") for i in range(1, 6)])
    earlier = planned_wave(engine, path, name="W0", start=dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC))
    audience.load_contacts(engine, earlier.wave_id, path)
    outbox.enqueue(engine, earlier.wave_id, "invitation", [("C3", "c3@a1.example")])
    storage.execute(engine, "UPDATE outbox SET status = 'sent'")
    storage.execute(engine, "UPDATE contacts SET opted_out_at = :t WHERE contact_id = 'C1'", {"t": storage.utcnow()})
    storage.execute(engine, "UPDATE contacts SET bounced_at = :t WHERE contact_id = 'C2'", {"t": storage.utcnow()})

    wave = planned_wave(engine, path, name="W1")  # opens 2026-03-02, within 90 days of W0
    ids = [f"C{i}" for i in range(1, 6)]
    counts = audience.snapshot_audience(engine, wave.wave_id, ids, 90, wave.open_at)
    assert counts == {"opted_out": 1, "bounced": 1, "surveyed_recently": 1, "included": 2}

    # A new extract never resets consent, and re-snapshotting keeps the first snapshot.
    audience.load_contacts(engine, wave.wave_id, path)
    storage.execute(engine, "UPDATE contacts SET opted_out_at = :t WHERE contact_id = 'C4'", {"t": storage.utcnow()})
    assert audience.snapshot_audience(engine, wave.wave_id, ids, 90, wave.open_at) == counts
    assert storage.fetch_one(engine, "SELECT opted_out_at FROM contacts WHERE contact_id = 'C1'")["opted_out_at"]


def test_wave_parameters_are_validated():
    with pytest.raises(waves.WaveError, match="detractor_max must be between 0 and 6"):
        waves.WaveParams.from_params({**_minimal(), "detractor_max": 8})
    with pytest.raises(waves.WaveError, match=r"pillar_questions\[0\] needs"):
        waves.WaveParams.from_params({**_minimal(), "pillar_questions": [{"id": "x", "text": "t", "scale": "1-7"}]})
    with pytest.raises(waves.WaveError, match="invalid wave parameters"):
        waves.WaveParams.from_params({**_minimal(), "open_at": "next tuesday"})
    assert waves.WaveParams.from_params(_minimal()).wave_id == "customer-nps-2026-q4"


def _minimal() -> dict:
    return {
        "wave_name": "2026 Q4",
        "program": "Customer NPS",
        "product": "P",
        "country": "us",
        "audience_csv": "x.csv",
        "open_at": "2026-03-02T09:00:00Z",
        "close_at": "2026-03-16T09:00:00Z",
        "sender": "a@b.example",
        "executive_sender": "c@d.example",
    }


HEADER = ["Contact ID", " EMAIL ", "Name", "Account ID", "Account Name", "Locale", "Notes"]
ROWS = [
    ["C1", "aiko@a1.example", "山田 愛子", "A1", "株式会社エー", "ja-JP", "first"],
    ["C2", "dana@a2.example", "דנה כהן", "A2", "Acme; Ltd", "he", "line one\nline two"],
]


def _export(delimiter: str, line_end: str = "\n") -> str:
    """How a spreadsheet writes the rows: quoted where needed, extra column, its own header."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=line_end).writerows([HEADER, *ROWS])
    return out.getvalue()


@pytest.mark.parametrize(
    ("encoding", "delimiter", "line_end"),
    [
        ("utf-8", ",", "\n"),
        ("utf-8-sig", ",", "\r\n"),  # Excel's "CSV UTF-8"
        ("utf-16", "\t", "\r\n"),  # Excel's "Unicode text"
        ("utf-16-le", ";", "\r\n"),  # no byte order mark
        ("utf-8", ";", "\r\n"),  # European Excel
    ],
)
def test_real_exports_load_whatever_their_encoding_delimiter_and_header_case(tmp_path, encoding, delimiter, line_end):
    path = tmp_path / "export.csv"
    text = _export(delimiter, line_end)
    path.write_bytes(text.encode(encoding))
    table = audience.read_contacts_csv(path)
    assert table.delimiter == delimiter and table.problems == []
    frame = table.frame
    assert frame["name"].tolist() == ["山田 愛子", "דנה כהן"]
    assert frame["account_name"].tolist() == ["株式会社エー", "Acme; Ltd"]
    assert frame["notes"].tolist() == ["first", "line one\nline two"]  # extra column, quoted newline kept
    assert frame["row_number"].tolist() == [2, 3]


def test_a_shift_jis_export_from_japanese_excel_loads(engine, tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes(_export(",", "\r\n").replace("דנה כהן", "Dana").encode("cp932"))
    table = audience.read_contacts_csv(path)
    assert table.encoding == "cp932" and table.frame.loc[0, "name"] == "山田 愛子"
    result = audience.load_contacts(engine, "w", path)
    assert result.contact_ids == ["C1", "C2"]
    assert storage.fetch_one(engine, "SELECT name, locale FROM contacts WHERE contact_id = 'C1'") == {
        "name": "山田 愛子",
        "locale": "ja",
    }


JAPANESE_ROWS = [
    ["C1", "aiko@a1.example", "山田 愛子", "A1", "株式会社エー", "ja-JP", "Asia/Tokyo"],
    ["C2", "ken@a1.example", "佐藤 健（ｻﾄｳ）", "A1", "株式会社エー", "ja", ""],
    ["C3", "mary@a2.example", "Mary O'Neil", "A2", "Acme; Ltd", "en", "america/new_york"],
]


@pytest.mark.parametrize(
    ("encoding", "bom", "delimiter", "line_end"),
    [
        ("utf-8", b"", ",", "\n"),
        ("utf-8", b"\xef\xbb\xbf", ",", "\r\n"),  # Excel's "CSV UTF-8" (Windows and Mac)
        ("utf-8", b"\xef\xbb\xbf", ";", "\r\n"),  # Excel's "CSV UTF-8" where the list separator is ';'
        ("utf-8", b"", "\t", "\r"),  # tab separated, old Mac line ends
        ("utf-16-le", b"\xff\xfe", "\t", "\r\n"),  # Excel's "Unicode text"
        ("utf-16-be", b"\xfe\xff", "\t", "\r\n"),
        ("cp932", b"", ",", "\r\n"),  # Excel's "CSV" on Japanese Windows
        ("cp932", b"", "\t", "\r\n"),
        ("cp932", b"", ";", "\r\n"),
    ],
    ids=["utf8", "utf8-bom-comma", "utf8-bom-semicolon", "utf8-tab-cr", "utf16le-bom", "utf16be-bom", "cp932-comma",
         "cp932-tab", "cp932-semicolon"],
)  # fmt: skip
def test_japanese_names_load_in_every_encoding_and_delimiter_excel_writes(
    engine, tmp_path, encoding, bom, delimiter, line_end
):
    import csv
    import io

    out = io.StringIO()
    header = ["Contact ID", "Email", "Name", "Account ID", "Account Name", "Locale", "Time Zone"]
    csv.writer(out, delimiter=delimiter, lineterminator=line_end).writerows([header, *JAPANESE_ROWS])
    path = tmp_path / "export.csv"
    path.write_bytes(bom + out.getvalue().encode(encoding))

    result = audience.load_contacts(engine, "w", path)
    assert (result.rows, result.loaded, result.quarantined) == (3, 3, 0)
    stored = storage.fetch_all(engine, "SELECT name, locale, timezone FROM contacts ORDER BY contact_id")
    assert stored == [
        {"name": "山田 愛子", "locale": "ja", "timezone": "Asia/Tokyo"},
        {"name": "佐藤 健（ｻﾄｳ）", "locale": "ja", "timezone": None},
        {"name": "Mary O'Neil", "locale": "en", "timezone": "America/New_York"},
    ]
    assert storage.fetch_one(engine, "SELECT name FROM accounts WHERE account_id = 'A2'") == {"name": "Acme; Ltd"}


@pytest.mark.parametrize("heading", ["E-mail", "Email Address", "E-mail Address", "EMAIL"])
def test_the_address_column_may_carry_the_heading_other_exports_give_it(engine, tmp_path, heading):
    path = tmp_path / "export.csv"
    path.write_text(f"Contact ID,{heading},Name,Account ID,Account Name\nC1,a@a1.example,Ann,A1,Acme\n")
    assert audience.load_contacts(engine, "w", path).loaded == 1
    assert storage.fetch_one(engine, "SELECT email FROM contacts") == {"email": "a@a1.example"}


def test_the_timezone_column_is_optional_and_a_file_without_it_stores_none(engine, tmp_path):
    assert "timezone" in audience.OPTIONAL_COLUMNS
    path = write_csv(tmp_path / "c.csv", [contact("C1")])  # the factory's columns have no timezone
    assert audience.load_contacts(engine, "w", path).loaded == 1
    assert storage.fetch_one(engine, "SELECT timezone FROM contacts") == {"timezone": None}
