"""Addresses people type into the trigger form, parsed strictly when a wave is planned: one bare
address per recipient item, allow-list entries as whole addresses or whole domains, senders as one
mailbox. Every way of slipping a second recipient into one item is refused, naming field and item."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from include.nps.core import addresses
from include.nps.wave import waves
from tests.factories import wave_params

# One item that would reach a second mailbox if it were sent as typed, and what it holds.
BYPASSES = {
    "comma": ("x@evil.example,y@vendor.example", "holds a comma"),
    "semicolon": ("x@evil.example;y@vendor.example", "holds a semicolon"),
    "space": ("x@evil.example y@vendor.example", "holds a space"),
    "newline": ("x@evil.example\ny@vendor.example", "holds a newline"),
    "tab": ("x@evil.example\ty@vendor.example", "holds a tab"),
    "ideographic-space": ("x@evil.example\u3000y@vendor.example", "holds the space character U+3000"),
    "display-name": ("Sales <x@evil.example>", "has a display name"),
    "angle-brackets": ("<x@evil.example>", "has a display name"),
    "quoted-local-part": ('"x@evil.example"@vendor.example', "has a display name, quotes or a comment"),
    "comment": ("y(x@evil.example)@vendor.example", "has a display name, quotes or a comment"),
    "two-ats": ("x@evil.example@vendor.example", "is not exactly one email address"),
    "cyrillic-look-alike": ("y@vendor.ex\u0430mple", "holds the non-ASCII character U+0430 (CYRILLIC SMALL LETTER A)"),
    "domain-literal": ("x@[203.0.113.7]", "has a display name, quotes or a comment"),
    "header-injection": ("y@vendor.example\r\nBcc: x@evil.example", "holds a line break"),
    "nul": ("y@vendor.example\x00x@evil.example", "holds the control character U+0000"),
}


@pytest.mark.parametrize(("item", "reason"), BYPASSES.values(), ids=BYPASSES.keys())
def test_an_item_holding_more_than_one_bare_address_is_refused(item: str, reason: str):
    with pytest.raises(addresses.AddressError, match=re.escape(reason)):
        addresses.bare_address(item)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("", "is empty"),
        ("sales.vendor.example", "is not exactly one email address"),
        ("sales@vendor", "the domain 'vendor' is not a full domain name"),
        ("sales@-vendor.example", "the domain '-vendor.example' is not a full domain name"),
        ("sales.@vendor.example", "is not an email address"),
        ("sales@vendor.example.", "is not an email address"),
        ("sales@", "is not an email address"),
    ],
)
def test_what_is_not_an_address_is_refused(item: str, reason: str):
    with pytest.raises(addresses.AddressError, match=reason):
        addresses.bare_address(item)


def test_a_bare_address_is_kept_lower_cased_without_surrounding_blanks():
    assert addresses.bare_address("  Sales.Ops+drops@Vendor.Example ") == "sales.ops+drops@vendor.example"
    assert addresses.bare_address("o'brien@xn--bcher-kva.example") == "o'brien@xn--bcher-kva.example"


@pytest.mark.parametrize(
    "sender",
    ["Acme CS <cs@acme.example>", "cs@acme.example", '"Acme, CS" <cs@acme.example>', "アクメ <cs@acme.example>"],
)
def test_a_sender_is_one_address_and_may_have_a_display_name(sender: str):
    assert addresses.mailbox(f" {sender} ") == sender


@pytest.mark.parametrize(
    "sender",
    [
        "Acme Customer Success",  # no address at all
        "Acme, CS <cs@acme.example>",  # an unquoted comma makes two mailboxes
        "cs@acme.example, x@evil.example",
        "Acme <cs@acme.example> x@evil.example",
        "cs@acme.example\nBcc: x@evil.example",
        "Acme <cs@acme>",
        "Acme <cs@acme.example",
        "",
    ],
)
def test_a_sender_that_is_not_one_address_is_refused(sender: str):
    with pytest.raises(addresses.AddressError):
        addresses.mailbox(sender)


def test_allow_list_entries_are_whole_addresses_or_whole_domains():
    assert addresses.allow_entry(" @Vendor.Example ") == "vendor.example"
    assert addresses.allow_entry("Sales@Vendor.Example") == "sales@vendor.example"
    for entry, reason in [
        ("evil.example,vendor.example", "holds a comma: give one address or domain per item"),
        ("evil.example vendor.example", "holds a space"),
        ("*.vendor.example", r"holds a wildcard \(\*\)"),
        ("vendor", "not a full domain name"),
        ("Sales <sales@vendor.example>", "holds a space"),
    ]:
        with pytest.raises(addresses.AddressError, match=reason):
            addresses.allow_entry(entry)


def _params(tmp_path: Path, **overrides) -> dict:
    return wave_params(tmp_path / "contacts.csv", **overrides)


@pytest.mark.parametrize("field", ["sales_recipients", "cs_ops_recipients"])
@pytest.mark.parametrize(("item", "reason"), BYPASSES.values(), ids=BYPASSES.keys())
def test_planning_refuses_a_recipient_item_that_is_not_one_address(tmp_path, field: str, item: str, reason: str):
    params = _params(tmp_path, **{field: ["ok@vendor.example", item]})
    with pytest.raises(waves.WaveError) as refused:
        waves.WaveParams.from_params(params)
    assert f"{field}[1] {item!r} {reason}" in str(refused.value)


def test_planning_refuses_a_recipient_field_given_as_one_string(tmp_path):
    with pytest.raises(waves.WaveError, match="sales_recipients must be a list with one address per item"):
        waves.WaveParams.from_params(_params(tmp_path, sales_recipients="a@vendor.example,x@evil.example"))


def test_planning_refuses_an_allow_list_entry_that_is_not_one_address_or_domain(tmp_path):
    params = _params(tmp_path, drop_allow_list=["vendor.example", "evil.example;vendor.example"])
    with pytest.raises(
        waves.WaveError, match=r"drop_allow_list\[1\] 'evil\.example;vendor\.example' holds a semicolon"
    ):
        waves.WaveParams.from_params(params)


@pytest.mark.parametrize(
    "allow_list",
    [["vendor.example"], ["@vendor.example"], ["sales@vendor.example"], []],  # [] = the sender's domain
    ids=["domain", "at-domain", "address", "sender-domain"],
)
def test_planning_refuses_sales_recipients_of_emailed_drops_outside_the_allow_list(tmp_path, allow_list):
    for outsider in ["x@evilvendor.example", "x@vendor.example.evil.example", "x@eu.vendor.example"]:
        params = _params(
            tmp_path, sender="CS <cs@vendor.example>", drop_allow_list=allow_list, sales_recipients=[outsider]
        )
        with pytest.raises(waves.WaveError, match=rf"sales_recipients\[0\] '{outsider}' is not on the drop allow-list"):
            waves.WaveParams.from_params(params)
    insider = _params(tmp_path, drop_allow_list=allow_list, sales_recipients=["Sales@Vendor.Example"])
    assert waves.WaveParams.from_params(insider).sales_recipients == ["sales@vendor.example"]


def test_storage_only_drops_do_not_need_allow_listed_sales_recipients(tmp_path):
    params = _params(
        tmp_path,
        sales_recipients=["sales@partner.example"],
        drop_channels=["storage"],
        drop_location="file:///srv/drops",
    )
    assert waves.WaveParams.from_params(params).sales_recipients == ["sales@partner.example"]


@pytest.mark.parametrize("field", ["sender", "executive_sender"])
def test_planning_refuses_a_sender_that_is_not_an_address(tmp_path, field: str):
    with pytest.raises(waves.WaveError, match=rf"{field} 'Acme Customer Success' is not one address"):
        waves.WaveParams.from_params(_params(tmp_path, **{field: "Acme Customer Success"}))
    wave = waves.WaveParams.from_params(_params(tmp_path, **{field: "Acme CS <cs@vendor.example>"}))
    assert getattr(wave, field) == "Acme CS <cs@vendor.example>"


def test_every_optional_field_may_be_left_empty(tmp_path):
    """What the trigger form sends for a field left empty: None."""
    optional = [
        "pillar_questions",
        "sales_recipients",
        "cs_ops_recipients",
        "detractor_max",
        "frequency_days",
        "share_quotes",
        "chunk_size",
        "drop_channels",
        "drop_formats",
        "drop_location",
        "drop_storage_conn_id",
        "drop_allow_list",
        "mail_size_limit_mb",
        "max_rejected_share",
        "audience_min_ratio",
        "audience_max_ratio",
        "max_comment_chars",
        *(f"{name}_at" for name in waves.OVERRIDABLE),
    ]
    wave = waves.WaveParams.from_params(_params(tmp_path, **dict.fromkeys(optional)))
    assert (wave.drop_location, wave.drop_storage_conn_id, wave.drop_allow_list) == ("", "", [])
    assert (wave.sales_recipients, wave.drop_channels, wave.drop_formats) == ([], ["email"], ["xlsx"])
    assert (wave.detractor_max, wave.chunk_size, wave.thresholds) == (6, 500, waves.CheckThresholds())
    assert wave.drop_allowed == ["vendor.example"]  # the sender's domain


def test_a_planned_wave_reads_back_the_same(tmp_path):
    params = _params(tmp_path, drop_allow_list=["@Vendor.Example", "Partner@Other.Example"])
    wave = waves.WaveParams.from_params(params)
    assert wave.drop_allow_list == ["vendor.example", "partner@other.example"]
    stored = waves.json.loads(wave.to_json())
    again = waves.WaveParams.from_params({**stored, "open_at": params["open_at"], "close_at": params["close_at"]})
    assert (again.drop_allow_list, again.sales_recipients, again.sender) == (
        wave.drop_allow_list,
        wave.sales_recipients,
        wave.sender,
    )
