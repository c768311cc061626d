"""Small, explicit test data."""

from __future__ import annotations

import csv
import datetime as dt
from email.message import EmailMessage
from pathlib import Path

from include.nps.wave import waves

FIELDS = [
    "contact_id",
    "email",
    "name",
    "locale",
    "role",
    "account_id",
    "account_name",
    "account_tier",
    "sales_owner",
    "csm",
    "vip",
]


def contact(contact_id: str, account: str = "A1", **overrides: str) -> dict[str, str]:
    row = {
        "contact_id": contact_id,
        "email": f"{contact_id.lower()}@{account.lower()}.example",
        "name": f"Person {contact_id}",
        "locale": "en",
        "role": "admin",
        "account_id": account,
        "account_name": f"{account} Inc",
        "account_tier": "smb",
        "sales_owner": "seller@vendor.example",
        "csm": "csm@vendor.example",
        "vip": "false",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def wave_params(csv_path: Path, name: str = "W1", start: dt.datetime | None = None, **overrides) -> dict:
    start = start or dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    params = {
        "wave_name": name,
        "program": "test",
        "product": "Acme Cloud",
        "country": "US",
        "audience_csv": str(csv_path),
        "open_at": start.isoformat(),
        "close_at": (start + dt.timedelta(days=14)).isoformat(),
        "pillar_questions": [{"id": "support", "text": "Support?", "scale": "1-5"}],
        "sales_recipients": ["sales@vendor.example"],
        "cs_ops_recipients": ["csops@vendor.example"],
        "sender": "CS <cs@vendor.example>",
        "executive_sender": "CEO <ceo@vendor.example>",
    }
    params.update(overrides)
    return params


def planned_wave(engine, csv_path: Path, **kwargs) -> waves.WaveParams:
    wave = waves.WaveParams.from_params(wave_params(csv_path, **kwargs))
    waves.plan_wave(engine, wave)
    return wave


def email_context(**extra) -> dict:
    """What every customer email's template is given (wave, contact, links), plus `extra`."""
    return {
        "wave": {"product": "Acme Cloud", "close_at": dt.datetime(2026, 3, 16, 9, tzinfo=dt.UTC)},
        "contact": {"name": "Ada"},
        "survey_url": "https://survey.example/s/t",
        "unsubscribe_url": "https://survey.example/u/t",
        **extra,
    }


def flash_figures(responded: bool = True) -> dict:
    """The figures part of a flash-results email: NPS up, one pillar stable."""
    return {
        "current": {"nps": 12.5, "responses": 40},
        "previous": {"nps": 4.0},
        "nps_direction": "up",
        "pillar_rows": [
            {
                "text": "Support?",
                "translations": {"ja": "サポート?", "zh": "支持?", "he": "תמיכה?", "nb": "Støtte?"},
                "scale": "1-5",
                "score": 4.2,
                "previous": 4.0,
                "direction": "stable",
            },
        ],
        "responded": responded,
    }


def plain_email(row: dict) -> EmailMessage:
    """A minimal email to an outbox row's address: the ledger's tests render this."""
    message = EmailMessage()
    message["From"] = "cs@vendor.example"
    message["To"] = row["address"]
    message["Subject"] = "hello"
    message.set_content("hello")
    return message
