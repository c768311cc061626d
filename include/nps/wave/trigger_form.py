"""The `nps_wave` trigger form: its fields, their JSON schemas and how Airflow's form shows them.

The DAG file imports this at parse time, so it stays light: only Airflow's `Param` and the default
pillar questions. The wave calendar checks its YAML waves against these same fields.

How Airflow 3's form reads a schema (see its `example_params_ui_tutorial.py`): a field whose type
does not allow "null" is required, and an empty text box is null, so optional text is
`type=["null", "string"]` with a None default (a "" default reads as a missing required value);
`type="array"` with `examples` is a multi-select; an array of strings is a text box, one item per line.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from include.nps.wave.pillars import DEFAULT_PILLARS

OPTIONAL_TIME: dict[str, Any] = {"type": ["null", "string"], "format": "date-time"}
OPTIONAL_TEXT: dict[str, Any] = {"type": ["null", "string"]}
DROP_CHANNELS = {"email": "email (attached, or linked above the size limit)", "storage": "storage (drop location)"}
DROP_FORMATS = {"xlsx": "XLSX (Excel)", "csv": "CSV (UTF-8 with BOM)"}
# One address per item: the form refuses lists (comma, semicolon, whitespace) and display names;
# `include.nps.core.addresses` parses each item strictly when the wave is planned and again at send.
NO_LIST = r'^[^\s,;<>"()]+$'
ADDRESS_ITEM = {"type": "string", "format": "email", "pattern": NO_LIST}


def pick_list(choices: dict[str, str]) -> dict[str, Any]:
    """A multi-select of fixed `choices` (value: label), at least one, each once."""
    return {
        "type": "array",
        "examples": list(choices),
        "values_display": choices,
        "items": {"type": "string", "enum": list(choices)},
        "minItems": 1,
        "uniqueItems": True,
    }


def milestone_override(name: str, when: str) -> Param:
    return Param(
        None,
        **OPTIONAL_TIME,
        title=f"{name} at (optional)",
        description=f"Overrides the computed time: {when}.",
        section="Timeline overrides",
    )


def retention_params() -> dict[str, Param]:
    """The program's retention (days; empty keeps): applied daily by `nps_retention` to all its waves."""
    described = {
        "retention_comment_days": (
            "Keep comments and call notes (days)",
            "Comments, root causes in words and call notes older than this are emptied (scores stay). "
            "Empty: kept. Applies to every wave of the program, by its latest wave's setting.",
        ),
        "retention_response_days": (
            "Keep responses (days)",
            "Responses answered longer ago than this are deleted with their follow-ups and history. Empty: kept.",
        ),
        "retention_quarantine_days": (
            "Keep quarantined rows and drop files (days)",
            "Rejected input rows, raw-data drop files and rejected-rows CSVs older than this are deleted. Empty: kept.",
        ),
    }
    return {
        name: Param(
            None, type=["null", "integer"], minimum=0, title=title, description=description, section="Retention"
        )
        for name, (title, description) in described.items()
    }


def wave_form_params() -> dict[str, Param]:
    """The trigger form's fields by name (the DAG's `params`), in the order the form shows them."""
    return {
        "wave_name": Param(
            type="string",
            minLength=1,
            maxLength=100,
            title="Wave name",
            description="Unique within the program, e.g. 2026-Q4. Re-using a name re-runs that wave.",
        ),
        "program": Param(
            "customer-nps",
            type="string",
            minLength=1,
            title="Program",
            description="Waves of one program are compared with each other.",
        ),
        "product": Param(
            "Acme Cloud",
            type="string",
            minLength=1,
            title="Product or company name",
            description="Used in 'How likely are you to recommend …'.",
        ),
        "country": Param(
            "US",
            type="string",
            pattern="^[A-Z]{2}$",
            title="Country",
            description="ISO code whose business days count (flash results at close + 3 business days).",
        ),
        "audience_csv": Param(
            type="string",
            minLength=1,
            title="Contacts file",
            description=(
                "Path of the contacts CSV. Columns: contact_id, email, name, account_id, account_name; "
                "optional: locale, role, account_tier, account_country, sales_owner, csm, vip, timezone."
            ),
        ),
        "open_at": Param(
            type="string",
            format="date-time",
            title="Survey opens",
            description="Invitations go out at this time (UTC).",
        ),
        "close_at": Param(
            type="string",
            format="date-time",
            title="Survey closes",
            description="Responses are frozen at this time (UTC).",
        ),
        "pillar_questions": Param(
            DEFAULT_PILLARS,
            type="array",
            minItems=0,
            maxItems=5,
            items={
                "type": "object",
                "required": ["id", "text", "scale"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "text": {"type": "string", "minLength": 1},
                    "scale": {"enum": ["0-10", "1-5"]},
                    "translations": {
                        "type": "object",
                        "propertyNames": {"enum": ["ja", "zh", "he", "nb"]},
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                },
            },
            title="Pillar questions",
            description=(
                "About three headline questions, each with a 0-10 or 1-5 scale; shown in the flash results. "
                'Optional "translations": {"ja": "...", "zh": "...", "he": "...", "nb": "..."}; '
                "the default questions are translated already."
            ),
        ),
        "sales_recipients": Param(
            [],
            type=["null", "array"],
            items=ADDRESS_ITEM,
            title="Sales recipients",
            description="Who receives the mid-wave and post-wave raw-data drops. One address per line.",
        ),
        "cs_ops_recipients": Param(
            [],
            type=["null", "array"],
            items=ADDRESS_ITEM,
            title="CS ops recipients",
            description="Who receives the retrospective; the first one owns unassigned items. One address per line.",
        ),
        "sender": Param(
            "Acme Customer Success <cs@acme.example>",
            type="string",
            minLength=3,
            title="Sender",
            description="From address of customer emails: one address, a display name allowed "
            "(Acme Customer Success <cs@acme.example>).",
        ),
        "executive_sender": Param(
            "Acme CEO Office <ceo-office@acme.example>",
            type="string",
            minLength=3,
            title="Executive sender",
            description="From address of the follow-up to scores 0-1: one address, a display name allowed.",
        ),
        "detractor_max": Param(
            6,
            type="integer",
            minimum=0,
            maximum=6,
            title="Detractor band: highest score",
            description=(
                "Scores from 0 to this value are routed as detractors (6 by default; 4 when alerts are too many)."
            ),
        ),
        "frequency_days": Param(
            90,
            type="integer",
            minimum=0,
            title="Contact frequency (days)",
            description="Contacts invited by another wave within this many days are left out.",
        ),
        "share_quotes": Param(
            False,
            type="boolean",
            title="Quote promoters in the flash results",
            description=(
                "Up to two promoter comments per language, anonymised (names, addresses and numbers removed). "
                "Only when your customers agreed to it."
            ),
        ),
        "approve_flash_results": Param(
            False,
            type="boolean",
            title="Approve the flash results first",
            description=(
                "A person approves or rejects the flash results in Required Actions before they go to every "
                "contact, seeing the figures and a sample email. Rejected: nothing is sent (recorded)."
            ),
            section="Flash results approval",
        ),
        "flash_approval_on_timeout": Param(
            "approve",
            type="string",
            enum=["approve", "reject"],
            values_display={
                "approve": "send them (approve)",
                "reject": "send nothing (reject)",
            },
            title="Nobody answered by the flash-results time",
            description="What happens to an approval nobody answered when the flash results are due.",
            section="Flash results approval",
        ),
        "chunk_size": Param(
            500,
            type="integer",
            minimum=1,
            title="Messages per chunk",
            description=(
                "Wave-wide emails go out in chunks of this size, each over one mail server session; a send task "
                "takes one chunk or, for large mailings, a range of them (at most 256 tasks)."
            ),
            section="Advanced",
        ),
        "delivery_window_hours": Param(
            4,
            type="number",
            minimum=0.5,
            maximum=6,
            title="Delivery window (hours)",
            description=(
                "How long a mailing keeps retrying a message a server deferred (greylisting, busy): "
                "after this, from the mailing's planned time, it is recorded failed with the last reply."
            ),
            section="Delivery",
        ),
        "in_doubt": Param(
            "resend",
            type="string",
            enum=["resend", "hold"],
            values_display={
                "resend": "resend it with the same Message-ID (may arrive twice)",
                "hold": "hold it for a person (may never arrive)",
            },
            title="A send interrupted by a crash",
            description="At most one message per interrupted send task: nobody knows whether it arrived.",
            section="Delivery",
        ),
        "max_undelivered_share": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            title="Undelivered messages that fail a mailing's check (share)",
            description="Failed and in-doubt messages, as a share of those not suppressed by an opt-out or bounce.",
            section="Data checks",
        ),
        "drop_channels": Param(
            ["email"],
            **pick_list(DROP_CHANNELS),
            title="Deliver drops by",
            description="email: attached (linked above the size limit); storage: written to the drop location.",
            section="Raw-data drops",
        ),
        "drop_formats": Param(
            ["xlsx"],
            **pick_list(DROP_FORMATS),
            title="File formats",
            description="XLSX (filters, highlighted detractors) and/or CSV (UTF-8 with BOM for Excel).",
            section="Raw-data drops",
        ),
        "drop_location": Param(
            None,
            **OPTIONAL_TEXT,
            title="Drop location",
            description=(
                "Folder URL for the files and their manifest: file:///..., s3://bucket/path or gs://... "
                "Needed when drops are delivered to storage."
            ),
            section="Raw-data drops",
        ),
        "drop_storage_conn_id": Param(
            None,
            **OPTIONAL_TEXT,
            title="Storage connection",
            description="Airflow connection of the drop location (e.g. aws_default); empty for a local folder.",
            section="Raw-data drops",
        ),
        "drop_allow_list": Param(
            [],
            type=["null", "array"],
            items={"type": "string", "minLength": 3, "pattern": NO_LIST},
            title="Allowed drop recipients",
            description=(
                "Addresses or whole domains (vendor.example), one per line, that may receive raw data; "
                "empty = the sender's domain. A domain does not include its subdomains (list eu.vendor.example "
                "too if needed). Any other recipient stops the drop before anything is sent."
            ),
            section="Raw-data drops",
        ),
        "mail_size_limit_mb": Param(
            10,
            type="number",
            exclusiveMinimum=0,
            title="Mail size limit (MB)",
            description="Files above this are sent as a link to the drop location instead of attached.",
            section="Raw-data drops",
        ),
        "max_rejected_share": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            title="Rejected rows that stop the wave (share)",
            description="Bad contact rows and responses are set aside; above this share of them the wave stops.",
            section="Data checks",
        ),
        "audience_min_ratio": Param(
            0.5,
            type="number",
            minimum=0,
            maximum=1,
            title="Smallest audience, as a share of the previous wave's",
            description="A sudden drop in audience size is a broken extract: the wave stops before any email.",
            section="Data checks",
        ),
        "audience_max_ratio": Param(
            2.0,
            type="number",
            minimum=1,
            title="Largest audience, as a multiple of the previous wave's",
            description="A sudden jump in audience size is a broken extract too (duplicated rows, a wrong filter).",
            section="Data checks",
        ),
        "max_comment_chars": Param(
            5000,
            type="integer",
            minimum=1,
            title="Longest expected comment (characters)",
            description="Longer comments are reported as a warning; they do not stop the wave.",
            section="Data checks",
        ),
        "preannounce_at": milestone_override("Pre-announcement", "3 business days before open"),
        "reminder_at": milestone_override("Reminder", "about 40% of the way from open to close, at a business time"),
        "midwave_at": milestone_override("Mid-wave drop", "about halfway from open to close, at a business time"),
        "flash_at": milestone_override("Flash results", "close + 3 business days"),
        "retrospective_at": milestone_override("Retrospective", "flash results + 1 business day"),
        **retention_params(),
    }
