"""The trigger form's schemas, checked as Airflow checks a run's conf (`ParamsDict.validate`): the form
as shipped validates with only the required fields, optional text may stay empty, pick lists keep to
their choices, and a recipient item holding a list is refused before the run exists. How the UI
draws them is `tests/test_trigger_form_browser.py`."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from include.nps.wave.trigger_form import wave_form_params

REQUIRED = {
    "wave_name": "2027-Q1",
    "audience_csv": "/data/q1.csv",
    "open_at": "2027-02-01T09:00:00+00:00",
    "close_at": "2027-02-15T17:00:00+00:00",
}


def _validate(**fields) -> dict:
    form = ParamsDict(wave_form_params())
    form.update({**REQUIRED, **fields})
    return form.validate()


def test_the_required_fields_alone_make_a_valid_conf():
    conf = _validate()
    assert (conf["drop_location"], conf["drop_storage_conn_id"]) == (None, None)
    assert (conf["drop_channels"], conf["drop_formats"]) == (["email"], ["xlsx"])


def test_the_form_holds_back_trigger_only_for_the_four_required_fields():
    """Airflow's form keeps Trigger disabled while a field whose type does not allow null is empty
    (no default, None, or a "" default, which it reads as missing)."""
    from airflow.sdk.definitions._internal.types import is_arg_set

    needed = []
    for name, param in wave_form_params().items():
        types = param.schema.get("type")
        empty = not is_arg_set(param.value) or param.value in (None, "")
        if empty and "null" not in (types if isinstance(types, list) else [types]):
            needed.append(name)
    assert needed == list(REQUIRED)
    assert [name for name, param in wave_form_params().items() if param.value == ""] == []


@pytest.mark.parametrize("name", ["drop_location", "drop_storage_conn_id", "sales_recipients", "drop_allow_list"])
def test_optional_fields_are_null_able_so_the_form_does_not_require_them(name: str):
    assert "null" in wave_form_params()[name].schema["type"]
    assert _validate(**{name: None})[name] is None


@pytest.mark.parametrize(
    ("name", "choices"), [("drop_channels", ["email", "storage"]), ("drop_formats", ["xlsx", "csv"])]
)
def test_pick_lists_are_multi_selects_of_their_choices_only(name: str, choices: list[str]):
    schema = wave_form_params()[name].schema
    assert schema["type"] == "array" and schema["examples"] == choices  # Airflow's form draws a multi-select
    assert _validate(**{name: list(reversed(choices))})[name] == list(reversed(choices))
    for refused in (["fax"], [], [choices[0], choices[0]]):
        with pytest.raises(ParamValidationError):
            _validate(**{name: refused})


@pytest.mark.parametrize(
    "item",
    ["x@evil.example,y@vendor.example", "x@evil.example;y@vendor.example", "x@evil.example y@vendor.example",
     "x@evil.example\ny@vendor.example", "Evil <x@evil.example>"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["sales_recipients", "cs_ops_recipients", "drop_allow_list"])
def test_the_form_refuses_a_recipient_item_holding_a_list(name: str, item: str):
    with pytest.raises(ParamValidationError, match=name):
        _validate(**{name: ["ok@vendor.example", item]})
