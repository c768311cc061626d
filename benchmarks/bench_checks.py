"""Benchmark: what each step's data check costs, on frames shaped as the steps build them.

Prints figures; asserts nothing. `make bench-checks` (or `python -m benchmarks.bench_checks N R`)
checks an audience of N contacts (half of them answering) R times per step and prints the median
and the spread, after the one-off cost of importing Great Expectations and making its context.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def frames(contacts: int) -> dict[str, tuple[Any, list, str | None, float | None]]:
    """step: (frame, suite, row key, share of rows that may be set aside)."""
    import pandas as pd

    from include.nps.wave import data_checks
    from include.nps.wave.waves import CheckThresholds

    limits = CheckThresholds()
    opened = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    closed = opened + dt.timedelta(days=14)
    ids = [f"C{i:06d}" for i in range(contacts)]
    audience = pd.DataFrame(
        {
            "contact_id": ids,
            "email": [f"c{i}@account{i // 4}.example" for i in range(contacts)],
            "locale": "en",
            "account_name": [f"Account {i // 4}" for i in range(contacts)],
            "owner": "seller@vendor.example",
            "opted_out_before_snapshot": 0,
            "bounced_before_snapshot": 0,
        }
    )
    sent_at = pd.Timestamp(opened + dt.timedelta(minutes=5))
    outbox = pd.DataFrame(
        {"recipient": ids, "status": "sent", "sent_at": sent_at, "delivered": 1, "sent_to_suppressed": 0}
    )
    answered = ids[: contacts // 2]
    responses = pd.DataFrame(
        {
            "contact_id": answered,
            "score": [i % 11 for i in range(len(answered))],
            "answered_at": pd.Timestamp(opened + dt.timedelta(days=1)),
            "comment": "Support answered quickly, pricing is hard to follow.",
            "pillar_support": pd.array([1 + i % 5 for i in range(len(answered))], dtype="Int64"),
        }
    )
    pillars = [{"id": "support", "scale": "1-5"}]
    sheet = responses.rename(columns={"contact_id": "Contact ID", "score": "Score"}).assign(
        Salesperson=[f"seller{i % 20}@vendor.example" for i in range(len(answered))]
    )
    detractors = responses.loc[responses["score"] <= 6, "contact_id"].tolist()
    followups = pd.DataFrame({"contact_id": detractors, "owner": "csm@vendor.example", "owner_type": "cs"})
    figures = pd.DataFrame([{"nps": -27.3, "count_gap": 0}])
    items = pd.DataFrame(
        {
            "item_key": [f"item-{i}" for i in range(12)],
            "owner": "ops@vendor.example",
            "priority": "high",
            "due_date": "2026-04-01",
        }
    )
    return {
        "audience": (audience, data_checks.audience_suite(contacts, contacts, limits), "contact_id", None),
        "invitation (outbox)": (
            outbox,
            data_checks.outbox_suite(contacts, (opened, closed), limits.max_undelivered_share),
            "recipient",
            None,
        ),
        "responses": (
            responses,
            data_checks.responses_suite(pillars, ids, (opened, closed), limits),
            "contact_id",
            limits.max_rejected_share,
        ),
        "raw-data drop": (sheet, data_checks.drop_suite(len(sheet), list(sheet.columns)), "Contact ID", None),
        "salesperson files": (
            sheet.assign(file_for=sheet["Salesperson"]),
            data_checks.seller_files_suite("Salesperson"),
            "Contact ID",
            None,
        ),
        "routing": (followups, data_checks.routing_suite(detractors), "contact_id", None),
        "flash figures": (figures, data_checks.flash_suite(3, 6, 11), None, None),
        "retrospective": (items, data_checks.retrospective_suite(), "item_key", None),
    }


def main(contacts: int = 5000, repeats: int = 7) -> None:
    home = Path(tempfile.mkdtemp(prefix="nps-bench-checks-"))
    os.environ.update({"NPS_HOME": str(home), "GX_ANALYTICS_ENABLED": "False"})
    from include.nps.core.connections import nps_engine
    from include.nps.wave import data_checks

    logging.getLogger("include.nps.wave.data_checks").setLevel(logging.ERROR)
    engine = nps_engine()
    started = time.perf_counter()
    import great_expectations  # noqa: F401

    data_checks._batch_definition()
    print(f"one-off: import great_expectations + ephemeral context  {time.perf_counter() - started:6.2f} s")
    print(f"{contacts} contacts, {contacts // 2} responses; median of {repeats} runs per step\n")
    print(f"{'step':<22} {'rows':>6} {'expectations':>12} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for step, (frame, suite, key, share) in frames(contacts).items():
        times = []
        for _ in range(repeats):
            result = data_checks.run_check(engine, "bench", step, step, frame, suite, key, share)
            times.append(result.duration_ms)
        print(
            f"{step:<22} {len(frame):>6} {len(suite):>12} {statistics.median(times):>10.0f} "
            f"{min(times):>8.0f} {max(times):>8.0f}"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
