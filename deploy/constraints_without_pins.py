"""Airflow's constraints file without the packages requirements.txt pins itself (run by the Dockerfile).

The image installs requirements.txt with the constraints file of its Airflow version and Python, as
Airflow's docs advise for extending the image: every dependency the project does not pin stays at the
version Airflow was released and tested with. pip refuses a requirement pinned to another version than
its constraint, so the project's own pins are taken out of the constraints: where requirements.txt
names a version on purpose, that version wins; everything else follows Airflow.

Usage: python constraints_without_pins.py CONSTRAINTS REQUIREMENTS > filtered-constraints.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> set[str]:
    """The normalized names of the requirements in a requirements or constraints file."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        match = NAME.match(line)
        if match and not line.lstrip().startswith("-"):
            names.add(normalized(match[1]))
    return names


def without_pins(constraints: str, requirements: str) -> str:
    """`constraints` without the lines that constrain a package `requirements` names."""
    pinned = requirement_names(requirements)
    kept = [line for line in constraints.splitlines() if not (requirement_names(line) & pinned)]
    return "\n".join(kept) + "\n"


def main(argv: list[str]) -> None:
    constraints, requirements = (Path(arg).read_text(encoding="utf-8") for arg in argv)
    sys.stdout.write(without_pins(constraints, requirements))


if __name__ == "__main__":
    main(sys.argv[1:])
