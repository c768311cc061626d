"""Command line for automation: `python -m include.nps.privacy erase|export|retention ...`.

    python -m include.nps.privacy erase --email ada@example.com --actor dpo@vendor.example
    python -m include.nps.privacy export --email ada@example.com --out exports/
    python -m include.nps.privacy retention --dry-run

Prints what was done as JSON (counts, paths, files to recall); the NPS DB is the one the tasks use
(`NPS_DB_URL`, the `nps_db` connection, else SQLite in `NPS_HOME`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from include.nps.core.connections import nps_engine
from include.nps.privacy import requests, retention


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.nps.privacy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("erase", "export"):
        command = commands.add_parser(name)
        command.add_argument("--email")
        command.add_argument("--contact-id")
        command.add_argument(
            "--actor", default=None, help="who asks (recorded in the audit trail); default: the OS user"
        )
        command.add_argument("--reason", default="", help="the request's reference (a ticket number; no personal data)")
        if name == "export":
            command.add_argument("--out", type=Path, default=None, help="folder for the JSON and HTML files")
    command = commands.add_parser("retention")
    command.add_argument("--dry-run", action="store_true", help="count what is due, change nothing")
    command.add_argument("--actor", default=None)
    args = parser.parse_args(argv)
    actor = f"cli:{args.actor or getpass.getuser()}"
    engine = nps_engine()
    if args.command == "retention":
        done = retention.apply(engine, dry_run=args.dry_run, actor=actor)
    else:
        if not (args.email or args.contact_id):
            parser.error("give --email or --contact-id")
        out = getattr(args, "out", None)
        done = requests.handle(engine, args.command, actor, args.email, args.contact_id, args.reason, out)
    json.dump(done, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
