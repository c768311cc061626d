"""Benchmark: every set-based step of a wave at N contacts, on SQLite and on PostgreSQL, each beside
the plain alternative a data engineer would write, measured in the same run.

Prints figures; asserts nothing. `make bench-scale SIZE=100k` (or `python -m benchmarks.bench_scale
100k [sqlite|pg|both]`; sizes like 10k, 100k, 1M). Each part is its own module, runnable alone:

- `scale_audience`: build_audience (read, validate, quarantine, upsert, snapshot) beside pandas
  `read_csv` + `to_sql`; a second and a tenth wave of the same program (the frequency rule with history);
- `scale_mailing`: a wave-wide mailing into the ledger and the number of mapped send tasks it makes;
- `scale_send`: sending through the product's path beside a raw `smtplib` loop over one session, on
  at most `SEND_SAMPLE` messages (a send's cost per message does not depend on the wave's size, and
  a million messages at the wire's speed from Python would take an hour);
- `scale_close`: close, flash figures and retrospective beside a pandas read-once computation.

Every step runs in a child process, so each peak RSS is the step's own.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from benchmarks import harness

PARTS = ("scale_audience", "scale_mailing", "scale_send", "scale_close")
SEND_SAMPLE = 50_000


def size_of(text: str) -> int:
    """`10k`, `100k`, `1M` or a plain number."""
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    size = size_of(args[0]) if args else 10_000
    where = args[1] if len(args) > 1 else "both"
    for db in ("sqlite", "pg") if where == "both" else (where,):
        for name in PARTS:
            try:
                part = importlib.import_module(f"benchmarks.{name}")
                measured = min(size, SEND_SAMPLE) if name == "scale_send" else size
                rows = part.measure(measured, db)
            except Exception:  # one part's failure is printed; the others still run
                print(f"\n{name} on {db} failed:\n{traceback.format_exc()}", flush=True)
                continue
            harness.print_rows(f"{name}: {measured:,} contacts, {db}", rows)


if __name__ == "__main__":
    main()
