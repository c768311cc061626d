"""The project's versioned YAML files (routing rules, themes, wave calendar, follow-up rules) that
people edit by hand: where each is found, strict loading, and errors that say what to fix.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Collection, Hashable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from include.nps.core import storage

T = TypeVar("T")


class StrictLoader(yaml.SafeLoader):
    """Safe YAML where only true/false are booleans (`country: NO` stays Norway, a `no:` key stays
    text) and a key given twice in one mapping is an error, not silently the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the SafeLoader refuses it below
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (first on line {first_line[key]})", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def resolve_path(setting: str | None, env: str, default: Path) -> Path:
    """`setting` (an Airflow Variable's value, or a path given by hand), else the environment
    variable `env`, else `default`; a relative path is from the project's folder."""
    chosen = (setting or "").strip() or os.environ.get(env, "").strip()
    if not chosen:
        return default
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else storage.PROJECT_ROOT / path


def display_path(path: Path) -> str:
    """`path` as problems name it: relative to the project's folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(storage.PROJECT_ROOT))
    except ValueError:
        return str(path)


def load_checked(path: Path, parse: Callable[[Any, str], T], error: Callable[[list[str]], Exception]) -> T:
    """`parse(document, where)` of the YAML file `path` (see `read_yaml`), kept until the file changes."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _load_checked(path, stamp, parse, error)


@lru_cache(maxsize=16)
def _load_checked(
    path: Path, _stamp: int, parse: Callable[[Any, str], T], error: Callable[[list[str]], Exception]
) -> T:
    where = display_path(path)
    return parse(read_yaml(path, error, where), where)


def read_yaml(path: Path, error: Callable[[list[str]], Exception], where: str | None = None) -> Any:
    """The document of `path`, read with `StrictLoader`. A file that cannot be read or is not valid
    YAML raises `error([problem])`: why, with the line and column (and a hint for the usual
    mistakes), after `where` (the file as people know it) when given."""
    prefix = f"{where}: " if where else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([f"{prefix}no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([f"{prefix}cannot be read: {exc}"]) from None
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise error([f"{prefix}{at}not valid YAML: {reason}{_yaml_hint(reason)}"]) from None
    except yaml.YAMLError as exc:
        raise error([f"{prefix}not valid YAML: {exc}"]) from None


def _yaml_hint(reason: str) -> str:
    if "<block end>" in reason:
        return " (check the indentation of this line and the one above)"
    if "flow mapping" in reason or "flow sequence" in reason:
        return " (inside [...] or {...}, put text holding , ? : or # in quotes)"
    return ""


def kind_of(value: Any) -> str:
    """What a value read from YAML is, for an error message: "nothing", "a mapping", "a list",
    "true", "a number 404", or the text itself in quotes."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number {value!r}"
    return repr(value)


def did_you_mean(name: Any, known: Collection[str], otherwise: str | None = None) -> str:
    """The end of an "unknown field" message: "; did you mean 'x'?" with the known name closest to
    `name`, else "; " and `otherwise` (by default, the known names)."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {otherwise or 'known fields: ' + ', '.join(known)}"


def unknown_fields(data: Mapping, known: Collection[str], label: str, prefix: str = "") -> list[str]:
    """A problem for each key of `data` that is not `known`: "<label>: <prefix><key>: unknown field; ..."."""
    return [f"{label}: {prefix}{key}: unknown field{did_you_mean(key, known)}" for key in data if key not in known]
