"""Raw-data drops to sales, built and delivered for real: files read back with openpyxl and csv,
a `file://` drop location through ObjectStoragePath, emails through a real SMTP server."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json

import openpyxl
import pytest

from include.nps import pipeline
from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import audience, responses, sales_drops, waves
from tests.factories import contact, planned_wave, write_csv

SELLER_1, SELLER_2, OPS = "seller1@vendor.example", "seller2@vendor.example", "ops@vendor.example"
COMMENTS = {
    "C1": (3, "サポートの返答が遅いです。"),
    "C2": (9, "המוצר מצוין"),
    "C3": (1, '=HYPERLINK("http://evil.example","click")'),
    "C4": (8, "+1 for the API"),
    "C5": (6, "no salesperson here"),
}


def _contacts() -> list[dict[str, str]]:
    return [
        contact("C1", "A1", sales_owner=SELLER_1, locale="ja"),
        contact("C2", "A1", sales_owner=SELLER_1, locale="he"),
        contact("C3", "A2", sales_owner=SELLER_2, account_tier="enterprise"),
        contact("C4", "A2", sales_owner=SELLER_2),
        contact("C5", "A3", sales_owner=""),
        contact("C6", "A4", sales_owner=SELLER_1),  # invited, never answers: a silent account
    ]


@pytest.fixture
def drop_wave(engine, tmp_path, smtp):
    """Make an open wave with five answers; `rows` and `params` change its contacts and drop settings."""

    def make(rows: list[dict[str, str]] | None = None, **params) -> waves.WaveParams:
        path = write_csv(tmp_path / "contacts.csv", rows or _contacts())
        settings = {
            "sales_recipients": [OPS],
            "drop_allow_list": ["vendor.example"],
            "drop_channels": ["email", "storage"],
            "drop_formats": ["xlsx", "csv"],
            "drop_location": f"file://{tmp_path / 'share'}",
            **params,
        }
        wave = planned_wave(engine, path, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1), **settings)
        loaded = audience.load_contacts(engine, wave.wave_id, path)
        audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 90, wave.open_at)
        invited = audience.audience_frame(engine, wave.wave_id)
        outbox.enqueue(engine, wave.wave_id, "invitation", zip(invited["contact_id"], invited["email"], strict=True))
        storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": wave.open_at})
        waves.set_status(engine, wave.wave_id, "open")
        for contact_id, (score, comment) in COMMENTS.items():
            if contact_id in set(invited["contact_id"]):
                answer = {"score": score, "comment": comment, "pillar_answers": {"support": 4}}
                responses.record_response(engine, wave.wave_id, contact_id, answer)
        return wave

    return make


def _book(content: bytes):
    return openpyxl.load_workbook(io.BytesIO(content))


def _rows(book, sheet: str = "Responses") -> list[dict]:
    values = list(book[sheet].iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def _xlsx(message) -> bytes:
    return next(a.get_payload(decode=True) for a in message.iter_attachments() if a.get_filename().endswith(".xlsx"))


def _drops_to(smtp, address: str) -> list:
    return [m for m in smtp.spool.messages() if m["To"] == address and m["X-NPS-Kind"].startswith("drop_")]


def test_each_salesperson_gets_only_their_accounts_and_sales_ops_everything(drop_wave, smtp, tmp_path):
    wave = drop_wave()
    summary = pipeline.share_postwave_drop(wave.wave_id)
    assert summary["sent"] == 3 and summary["rows"] == 5

    (mine,) = _drops_to(smtp, SELLER_1)
    attachments = {a.get_filename(): a.get_payload(decode=True) for a in mine.iter_attachments()}
    assert set(attachments) == {
        f"{wave.wave_id}-postwave-{n}" for n in ("seller1-vendor-example.xlsx", "seller1-vendor-example.csv")
    }
    book = _book(attachments[f"{wave.wave_id}-postwave-seller1-vendor-example.xlsx"])
    assert sorted(r["Contact ID"] for r in _rows(book)) == ["C1", "C2"]
    assert [r["Account ID"] for r in _rows(book, "Silent accounts")] == ["A4"]
    (theirs,) = _drops_to(smtp, SELLER_2)
    book = _book(_xlsx(theirs))
    assert sorted(r["Contact ID"] for r in _rows(book)) == ["C3", "C4"]
    assert _rows(book, "Silent accounts") == []
    (complete,) = _drops_to(smtp, OPS)
    book = _book(_xlsx(complete))
    assert sorted(r["Contact ID"] for r in _rows(book)) == ["C1", "C2", "C3", "C4", "C5"]  # C5 has no seller


def test_the_sheet_opens_right_in_excel(drop_wave, smtp):
    wave = drop_wave()
    pipeline.share_postwave_drop(wave.wave_id)
    (complete,) = _drops_to(smtp, OPS)
    files = {a.get_filename().rsplit(".", 1)[1]: a.get_payload(decode=True) for a in complete.iter_attachments()}
    book = _book(files["xlsx"])
    sheet = book["Responses"]
    rows = {r["Contact ID"]: r for r in _rows(book)}
    # Formula injection: the comment arrives as text, never as a formula.
    cell = next(c for c in sheet["H"] if str(c.value).startswith("'=HYPERLINK"))
    assert cell.data_type == "s" and rows["C3"]["Comment"] == '\'=HYPERLINK("http://evil.example","click")'
    assert rows["C4"]["Comment"] == "'+1 for the API"
    # Japanese and Hebrew survive; dates are dates; the layout helps.
    assert rows["C1"]["Comment"] == "サポートの返答が遅いです。" and rows["C2"]["Comment"] == "המוצר מצוין"
    assert isinstance(rows["C1"]["Answered at (UTC)"], dt.datetime)
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == sheet.dimensions
    assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.print_title_rows == "$1:$1"
    assert sheet.column_dimensions["H"].width > sheet.column_dimensions["F"].width
    highlighted = {
        sheet.cell(row=r, column=1).value
        for r in range(2, 7)
        if sheet.cell(row=r, column=1).fill.fgColor.rgb.endswith("FDE2E1")
    }
    assert highlighted == {"C1", "C3", "C5"}  # the detractors
    assert rows["C3"]["Proposed follow-up owner"] == "sales" and rows["C1"]["Proposed follow-up owner"] == "cs"
    assert rows["C2"]["Proposed follow-up owner"] is None and "Sales decision (sales / cs)" in rows["C1"]
    # CSV: UTF-8 with BOM, same neutralised text.
    text = files["csv"].decode("utf-8")
    assert text.startswith("\ufeff")
    by_id = {r["Contact ID"]: r for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
    assert by_id["C2"]["Comment"] == "המוצר מצוין" and by_id["C3"]["Comment"].startswith("'=")


def test_blank_optional_columns_a_skipped_pillar_and_no_comment_leave_empty_cells(drop_wave, engine, smtp):
    """Every optional column blank for one account, a pillar skipped, no comment: the drop goes out and
    those cells are empty (never 'nan', '<NA>' or 'None'), in the XLSX and in the CSV."""
    blank = {column: "" for column in ("locale", "role", "account_tier", "sales_owner", "csm", "vip")}
    wave = drop_wave([*_contacts(), contact("C7", "A7", **blank)])
    answer = {"score": 2, "comment": None, "pillar_answers": {}}
    responses.record_response(engine, wave.wave_id, "C7", answer)

    pipeline.share_postwave_drop(wave.wave_id)

    (complete,) = _drops_to(smtp, OPS)
    files = {a.get_filename().rsplit(".", 1)[1]: a.get_payload(decode=True) for a in complete.iter_attachments()}
    row = {r["Contact ID"]: r for r in _rows(_book(files["xlsx"]))}["C7"]
    assert (row["Role"], row["Comment"], row["Salesperson"], row["Support? (1-5)"]) == (None, None, None, None)
    assert row["Category"] == "detractor" and row["Proposed follow-up owner"] == "cs"  # CS ops: nobody on record
    text = files["csv"].decode("utf-8-sig")
    assert not {"nan", "<NA>", "None", "NaT"} & set(next(r for r in csv.reader(io.StringIO(text)) if r[0] == "C7"))


def test_a_stored_comment_with_control_characters_is_written_escaped_not_refused(drop_wave, engine, smtp):
    """A comment stored before the form cleaned them (NUL, escape) would make openpyxl refuse the whole
    workbook: the cell shows them as escapes, the line break stays."""
    wave = drop_wave()
    storage.execute(engine, "UPDATE responses SET comment = :c WHERE contact_id = 'C1'", {"c": "a\x00b\x1bc\nd"})
    storage.execute(engine, "UPDATE response_history SET comment = :c WHERE contact_id = 'C1'", {"c": "a\x00b\x1bc\nd"})

    pipeline.share_postwave_drop(wave.wave_id)

    (complete,) = _drops_to(smtp, OPS)
    rows = {r["Contact ID"]: r for r in _rows(_book(_xlsx(complete)))}
    assert rows["C1"]["Comment"] == "a\\x00b\\x1bc\nd"


def test_the_manifest_matches_the_stored_files_and_a_re_run_is_identical_and_sends_nothing(drop_wave, smtp, tmp_path):
    wave = drop_wave()
    pipeline.share_postwave_drop(wave.wave_id)
    folder = tmp_path / "share" / wave.wave_id / "postwave"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["files"]) == 6  # complete + 2 salespeople, xlsx and csv each
    for entry in manifest["files"]:
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    mails = len(smtp.spool.messages())
    pipeline.share_postwave_drop(wave.wave_id)
    assert json.loads((folder / "manifest.json").read_text()) == manifest  # same bytes, same sums
    assert len(smtp.spool.messages()) == mails


def test_a_recipient_not_on_the_allow_list_stops_the_drop_before_anything_is_sent(drop_wave, smtp, tmp_path):
    rows = [*_contacts()[:4], contact("C5", "A3", sales_owner="someone@gmail.example")]
    wave = drop_wave(rows)
    with pytest.raises(Exception, match=r"someone@gmail\.example \(salesperson of the accounts\)") as failure:
        pipeline.share_postwave_drop(wave.wave_id)
    assert type(failure.value).__name__ == "AirflowFailException"  # no retry: the configuration is wrong
    assert "Nothing was sent" in str(failure.value)
    assert smtp.spool.messages() == [] and not (tmp_path / "share").exists()


def test_files_above_the_mail_limit_are_linked_not_attached(drop_wave, smtp, tmp_path):
    wave = drop_wave(mail_size_limit_mb=0.001)
    pipeline.share_postwave_drop(wave.wave_id)
    (mine,) = _drops_to(smtp, SELLER_1)
    assert list(mine.iter_attachments()) == []
    assert f"file://{tmp_path / 'share' / wave.wave_id / 'postwave'}" in mine.get_body(("plain",)).get_content()


def test_too_large_with_nowhere_to_link_stops_the_drop(drop_wave, smtp):
    wave = drop_wave(mail_size_limit_mb=0.001, drop_channels=["email"], drop_location="")
    with pytest.raises(Exception, match=r"above the 0\.001 MB mail limit"):
        pipeline.share_postwave_drop(wave.wave_id)
    assert smtp.spool.messages() == []


def test_the_midwave_drop_holds_the_answers_given_by_its_cutoff(drop_wave, engine, smtp, tmp_path):
    wave = drop_wave(drop_channels=["storage"], drop_formats=["csv"])
    storage.execute(
        engine, "UPDATE wave_milestones SET due_at = :t WHERE milestone = 'midwave'", {"t": storage.utcnow()}
    )
    responses.record_response(engine, wave.wave_id, "C6", {"score": 10, "comment": "late", "pillar_answers": {}})
    summary = pipeline.share_midwave_drop(wave.wave_id)
    assert summary["rows"] == 5 and summary["sent"] == 0  # storage only: nothing emailed
    text = (tmp_path / "share" / wave.wave_id / "midwave" / f"{wave.wave_id}-midwave-all-accounts.csv").read_text(
        encoding="utf-8-sig"
    )
    assert "late" not in text and smtp.spool.messages() == []
    # C2 changes their answer after the cutoff: a re-run of the drop still shows the answer as it
    # stood at the cutoff, byte for byte.
    manifest = (tmp_path / "share" / wave.wave_id / "midwave" / "manifest.json").read_bytes()
    responses.record_response(engine, wave.wave_id, "C2", {"score": 2, "comment": "changed", "pillar_answers": {}})
    pipeline.share_midwave_drop(wave.wave_id)
    assert (tmp_path / "share" / wave.wave_id / "midwave" / "manifest.json").read_bytes() == manifest
    assert "changed" not in (
        tmp_path / "share" / wave.wave_id / "midwave" / f"{wave.wave_id}-midwave-all-accounts.csv"
    ).read_text(encoding="utf-8-sig")


def test_decisions_sales_return_are_read_back_and_win_over_the_routing_rule(drop_wave, smtp, chat, tmp_path, nps_home):
    wave = drop_wave()
    pipeline.share_midwave_drop(wave.wave_id)
    midwave = tmp_path / "share" / wave.wave_id / "midwave"
    returned = tmp_path / "share" / wave.wave_id / "returned"
    returned.mkdir()
    # Seller 1 takes C1 (the rule gives this small account to its CSM) in their own file.
    own = _book((midwave / f"{wave.wave_id}-midwave-seller1-vendor-example.xlsx").read_bytes())
    _decide(own, {"C1": "Sales "})
    own.save(returned / "seller1.xlsx")
    # Sales ops return the complete file: a value that is no decision, and a contact not in the wave.
    complete = _book((midwave / f"{wave.wave_id}-midwave-all-accounts.xlsx").read_bytes())
    _decide(complete, {"C5": "maybe"})
    header = [c.value for c in complete["Responses"][1]]
    complete["Responses"].append(
        ["X9" if h == "Contact ID" else "cs" if h.startswith("Sales decision") else None for h in header]
    )
    complete.save(returned / "all.xlsx")
    # Seller 2 sends their CSV back by email; CS ops save it in the wave's reports folder.
    local = nps_home / "reports" / wave.wave_id / "returned"
    local.mkdir(parents=True)
    csv_text = "\ufeffContact ID;Sales decision (sales / cs)\r\nC3;cs\r\n"
    (local / "seller2.csv").write_bytes(csv_text.encode("utf-8"))

    pipeline.close_wave(wave.wave_id)
    pipeline.share_postwave_drop(wave.wave_id)
    pipeline.route_detractors(wave.wave_id)

    owners = storage.fetch_all(
        engine := pipeline.nps_engine(),
        "SELECT contact_id, owner_type, owner, owner_source FROM followups ORDER BY contact_id",
    )
    assert owners == [
        {"contact_id": "C1", "owner_type": "sales", "owner": SELLER_1, "owner_source": "sales_decision"},
        {"contact_id": "C3", "owner_type": "cs", "owner": "csm@vendor.example", "owner_source": "sales_decision"},
        {"contact_id": "C5", "owner_type": "cs", "owner": "csm@vendor.example", "owner_source": "rule"},
    ]
    rejected = storage.fetch_all(
        engine,
        "SELECT source, row_number, field, reason FROM quarantine WHERE source LIKE 'returned/%' ORDER BY row_number",
    )
    assert rejected == [
        {
            "source": "returned/all.xlsx",
            "row_number": 6,
            "field": "Sales decision (sales / cs)",
            "reason": "the sales decision must be sales or cs",
        },
        {
            "source": "returned/all.xlsx",
            "row_number": 7,
            "field": "contact_id",
            "reason": "contact X9 has no response in this wave",
        },
    ]
    # The post-wave drop shows the decisions already made.
    postwave = _rows(
        _book(
            (tmp_path / "share" / wave.wave_id / "postwave" / f"{wave.wave_id}-postwave-all-accounts.xlsx").read_bytes()
        )
    )
    assert {
        r["Contact ID"]: r["Sales decision (sales / cs)"] for r in postwave if r["Sales decision (sales / cs)"]
    } == {"C1": "sales", "C3": "cs"}


def _decide(book, decisions: dict[str, str]) -> None:
    sheet = book["Responses"]
    header = [c.value for c in sheet[1]]
    column = header.index("Sales decision (sales / cs)") + 1
    for row in range(2, sheet.max_row + 1):
        contact_id = sheet.cell(row=row, column=1).value
        if contact_id in decisions:
            sheet.cell(row=row, column=column, value=decisions[contact_id])


def test_a_drop_with_no_answers_yet_is_checked_and_stored_empty(drop_wave, engine, tmp_path):
    wave = drop_wave(drop_channels=["storage"], drop_formats=["csv"])
    storage.execute(engine, "DELETE FROM response_history")
    storage.execute(engine, "DELETE FROM responses")
    summary = pipeline.share_midwave_drop(wave.wave_id)
    assert summary["rows"] == 0 and summary["files"] == 1  # the complete file only, header row alone
    checks = storage.fetch_all(engine, "SELECT step, success FROM check_results ORDER BY step")
    assert checks == [{"step": "drop_midwave", "success": True}, {"step": "drop_midwave_files", "success": True}]


def test_a_response_set_aside_at_close_leaves_the_drop_and_a_re_run_clears_it(drop_wave, engine, smtp, tmp_path):
    wave = drop_wave(drop_channels=["storage"], drop_formats=["csv"], max_rejected_share=0.5)
    storage.execute(engine, "UPDATE outbox SET status = 'failed' WHERE recipient = 'C5'")  # C5 was never invited
    assert pipeline.close_wave(wave.wave_id) == {"wave_id": wave.wave_id, "responses": 4, "set_aside": 1}
    reasons = storage.fetch_all(engine, "SELECT contact_id FROM responses WHERE quarantine_reason IS NOT NULL")
    assert reasons == [{"contact_id": "C5"}]
    assert pipeline.share_postwave_drop(wave.wave_id)["rows"] == 4
    storage.execute(engine, "UPDATE outbox SET status = 'sent' WHERE recipient = 'C5'")
    assert pipeline.close_wave(wave.wave_id) == {"wave_id": wave.wave_id, "responses": 5, "set_aside": 0}
    assert (
        storage.fetch_one(engine, "SELECT COUNT(*) AS n FROM responses WHERE quarantine_reason IS NOT NULL")["n"] == 0
    )


@pytest.mark.parametrize(
    ("address", "allow_list", "expected"),
    [
        ("a@vendor.example", ["vendor.example"], True),
        ("A@Vendor.Example", ["@VENDOR.example"], True),
        ("sales@partner.example", ["sales@partner.example"], True),
        # A list in one item, whatever separates it, is never allowed: the outsider is in it.
        ("x@evil.example,y@vendor.example", ["vendor.example"], False),
        ("x@evil.example;y@vendor.example", ["vendor.example"], False),
        ("x@evil.example y@vendor.example", ["vendor.example"], False),
        ("x@evil.example\ny@vendor.example", ["vendor.example"], False),
        ("Evil <x@evil.example>, y@vendor.example", ["vendor.example"], False),
        ('"x@evil.example"@vendor.example', ["vendor.example"], False),
        # Whole domains only: not a domain that ends the same, nor a subdomain, nor a longer one.
        ("a@evilvendor.example", ["vendor.example"], False),
        ("a@eu.vendor.example", ["vendor.example"], False),
        ("a@vendor.example.evil.example", ["vendor.example"], False),
        ("other@partner.example", ["sales@partner.example"], False),
        # An entry that is itself a list allows no one.
        ("y@vendor.example", ["evil.example,vendor.example"], False),
    ],
)
def test_the_allow_list_matches_one_bare_address_by_whole_address_or_whole_domain(address, allow_list, expected):
    assert sales_drops.allowed(address, allow_list) is expected


@pytest.mark.parametrize(
    "address",
    [
        "x@evil.example,ops@vendor.example",
        "x@evil.example;ops@vendor.example",
        "x@evil.example ops@vendor.example",
        "x@evil.example\nops@vendor.example",
    ],
)
def test_the_send_refuses_a_recipient_item_holding_several_addresses(address):
    recipients = {OPS: "sales recipient", address: "salesperson of the accounts"}
    with pytest.raises(sales_drops.DropRefused) as refused:
        sales_drops.check_recipients(recipients, ["vendor.example"])
    assert f"{address!r} (salesperson of the accounts; not one address: it holds a" in str(refused.value)
    assert str(refused.value).startswith("raw-data drop stopped: 1 recipient(s)")
    assert str(refused.value).endswith("Nothing was sent.")


def test_the_send_refuses_an_allow_list_entry_that_is_not_an_address_or_a_domain():
    with pytest.raises(sales_drops.DropRefused, match=r"entries 'evil\.example,vendor\.example' holds a comma"):
        sales_drops.check_recipients({OPS: "sales recipient"}, ["evil.example,vendor.example"])
    sales_drops.check_recipients({OPS: "sales recipient"}, ["vendor.example"])  # the same recipient, a good list


def test_a_salesperson_field_holding_two_addresses_stops_the_drop_before_anything_is_sent(drop_wave, engine, smtp):
    """Defence in depth: even if an account's owner reached the NPS DB as a list (the contacts file
    check refuses it), the drop is refused at send and no one gets the file."""
    wave = drop_wave()
    storage.execute(
        engine, "UPDATE accounts SET sales_owner = :o WHERE account_id = 'A1'", {"o": f"x@evil.example,{SELLER_1}"}
    )
    with pytest.raises(
        Exception,
        match=r"'x@evil\.example,seller1@vendor\.example' \(salesperson of the accounts; "
        r"not one address: it holds a comma",
    ) as failure:
        pipeline.share_postwave_drop(wave.wave_id)
    assert type(failure.value).__name__ == "AirflowFailException"
    assert smtp.spool.messages() == []


def test_a_stored_wave_with_a_recipient_list_in_one_item_sends_no_drop(drop_wave, engine, smtp):
    """Parameters read back at send are parsed again: a wave stored before the strict parsing sends nothing."""
    wave = drop_wave()
    row = storage.fetch_one(engine, "SELECT params FROM waves WHERE wave_id = :w", w=wave.wave_id)
    params = {**json.loads(row["params"]), "sales_recipients": ["x@evil.example,ops@vendor.example"]}
    storage.execute(
        engine, "UPDATE waves SET params = :p WHERE wave_id = :w", {"p": json.dumps(params), "w": wave.wave_id}
    )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(  # at once: a retry would read the same parameters
        AirflowFailException, match=r"sales_recipients\[0\] 'x@evil\.example,ops@vendor\.example' holds a comma"
    ):
        pipeline.share_postwave_drop(wave.wave_id)
    assert smtp.spool.messages() == []


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_returned_file_with_nul_characters_is_quarantined_naming_its_rows(database, request):
    """PostgreSQL refuses a NUL in text: a decision file's bad cells are kept as visible escapes."""
    from include.nps.wave import sales_decisions

    engine = request.getfixturevalue("engine" if database == "sqlite" else "pg_engine")
    content = f"Contact ID,{sales_decisions.DECISION_HEADER}\nC\x001,cs\nC2,c\x00s\n".encode()
    assert sales_decisions.collect(engine, "w1", [sales_decisions.ReturnedFile("back.csv", content)], {"C2"}) == {}
    rows = storage.fetch_all(engine, "SELECT row_number, field, value, reason FROM quarantine ORDER BY row_number")
    assert [(r["row_number"], r["field"], r["value"]) for r in rows] == [
        (2, "contact_id", "C\\x001"),
        (3, sales_decisions.DECISION_HEADER, "c\\x00s"),
    ]
    assert "C\\x001 has no response" in rows[0]["reason"]
