"""The project's versioned YAML files (routing rules, themes, wave calendar, follow-up rules) that
people edit by hand: where each is found, strict loading, and errors that say what to fix.

A file is read with `StrictLoader`, then its document is checked by the file's pydantic models
(`RuleModel`: unknown keys refused, nothing coerced) through `check`, which turns pydantic's
`ValidationError` into the project's problems: each names the file, the item (`rule 3 'critical'`),
the field (`when.region`, `keywords.en[2]`, counted from 1) and the reason, every problem at once.
The reason is a validator's own (`invalid`), else the file's text for that field (`Messages.reasons`),
else a plain one from the error's type; an unknown key gets "did you mean".
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, ValidatorFunctionWrapHandler
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from include.nps.core import storage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


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
    """What a value read from YAML is, for an error message: "nothing", "a mapping", "an empty list",
    "true", "a number 404", or the text itself in quotes."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number {value!r}"
    return repr(value)


def did_you_mean(name: Any, known: Collection[str], otherwise: str | None = None) -> str:
    """The end of an "unknown field" message: "; did you mean 'x'?" with the known name closest to
    `name`, else "; " and `otherwise` (by default, the known names; nothing when none is known)."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if otherwise is None and not known:
        return ""
    return f"; {otherwise or 'known fields: ' + ', '.join(known)}"


# --- checking a document with pydantic models ------------------------------------------------------

RULE_FILE = "rule_file"  # a validator's own reason (`invalid`)
UNEXPECTED = "unexpected_value"  # a validator refusing a value (`unexpected`): the field's reason says why
UNKNOWN_KEYS = ("extra_forbidden", "invalid_key")  # a key no field has (invalid_key: a key that is not text)
EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "finite_number": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
}


class RuleModel(BaseModel):
    """A part of a rule file as people write it: an unknown key is refused (`extra="forbid"`) and
    nothing is coerced (`strict`: "1" is not a number, 1 is not true, text stays text)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


@dataclass(frozen=True)
class Problem:
    """One problem of a file, from one pydantic error."""

    where: str  # the file, as people know it
    item: str  # the numbered item it is in ("rule 3 'critical'"), or ""
    path: str  # the field in the item (or in the file): "when.region", "keywords.en[2]"; "" for the item itself
    parent: str  # `path` without its last key: where an unknown key or a bad key is
    reason: str
    kind: str  # pydantic's error type: "extra_forbidden" for an unknown key, RULE_FILE for a validator's reason
    about_key: bool = False  # the problem is a key (unknown, or not one the mapping takes), not a value

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.item, self.path, self.reason) if part)


@dataclass(frozen=True)
class Messages:
    """How the problems of one kind of file read.

    `reasons`: the reason for a field whose value pydantic refused (wrong type, missing, out of range,
    or a validator's `unexpected`), by the field's pattern: keys as written, `[]` for any list item,
    `*` for any one key (`"rules[].when.band"`, `"themes[].keywords.*[]"`); a template where
    `{kind}` is what the value is (`kind_of`) and `{value!r}` the value, or a mapping from pydantic's
    error type ("missing", ...; "" for any other) to a template. An item of a list without its own
    reason takes the list's.
    `items`: top-level lists whose items are named by number and name: {"rules": ("rule", "name")}.
    `unknown`: the reason for an unknown key; `{key!r}` is the key, `{hint}` "; did you mean ...".
    `render`: a problem as text.
    """

    reasons: Mapping[str, str | Mapping[str, str]] = field(default_factory=dict)
    items: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    unknown: str = "unknown field{hint}"
    render: Callable[[Problem], str] = str


def invalid(reason: str) -> PydanticCustomError:
    """What a validator raises when it knows what is wrong: `reason` ends the problem as written."""
    return PydanticCustomError(RULE_FILE, "{reason}", {"reason": reason})


def unexpected() -> PydanticCustomError:
    """What a validator raises for a value its field does not take: the field's reason says what it takes."""
    return PydanticCustomError(UNEXPECTED, "not a value this field takes")


def shared(info: ValidationInfo, name: str) -> dict[Any, Any]:
    """A record that the validators of one document share (`check` gives each document its own),
    for checks across items: the ids seen so far, the item being checked. Empty without a context."""
    context = info.context if isinstance(info.context, dict) else {}
    return context.setdefault(name, {})


def checked(
    value: Any,
    handler: ValidatorFunctionWrapHandler,
    problems: Iterable[tuple[Loc, str]],
    order: Callable[[Loc], Any] | None = None,
) -> Any:
    """For a wrap validator: `handler(value)`, the value checked as its type says, with `problems`
    (what checks across its fields or items found in the value as written: (where in it, reason))
    reported together with the handler's errors, so that a bad item does not hide them. `order`
    sorts all of them by where they are.

    pydantic runs a model's after-validators only when every field is valid; this runs the checks
    across fields or items whatever the rest holds, as people expect every problem at once. The
    handler's ValidationError is raised again with these problems added (pydantic's own wrap
    validator examples re-raise the handler's error).
    """
    found: list[InitErrorDetails] = [{"type": invalid(reason), "loc": loc, "input": value} for loc, reason in problems]
    title = "rule file"
    try:
        result = handler(value)
    except ValidationError as exc:
        title = exc.title
        found = [_again(error) for error in exc.errors(include_url=False)] + found
    if found:
        if order:
            found.sort(key=lambda error: order(error.get("loc", ())))
        raise ValidationError.from_exception_data(title, found)
    return result


def _again(error: ErrorDetails) -> InitErrorDetails:
    """An error of the handler, raised again as it was (its type, place, value and message)."""
    return {"type": PydanticCustomError(error["type"], error["msg"]), "loc": error["loc"], "input": error["input"]}


def check(model: type[M], document: Any, where: str, error: Callable[[list[str]], Exception], messages: Messages) -> M:
    """`document` (a file `where` as loaded) checked by `model`; `error(problems)` lists every problem."""
    try:
        return model.model_validate(document, context={})
    except ValidationError as exc:
        problems = problems_of(exc, document, where, model, messages)
        raise error([messages.render(problem) for problem in problems]) from None


def problems_of(
    error: ValidationError, document: Any, where: str, model: type[BaseModel], messages: Messages
) -> list[Problem]:
    """Each error of `error` as a problem of the file `where`, in the order of the document's checks,
    each unknown key first among the problems of its mapping (a misspelt key often explains them)."""
    return [_problem(found, document, where, model, messages) for found in _unknown_first(error.errors())]


def _unknown_first(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """`errors` in pydantic's order (fields as the model lists them, then unknown keys), each unknown
    key moved before the first error inside the mapping it is in."""

    def starts_with(error: ErrorDetails, prefix: tuple[Any, ...]) -> bool:
        return tuple(error["loc"][: len(prefix)]) == prefix

    order = []
    for number, error in enumerate(errors):
        if error["type"] in UNKNOWN_KEYS:
            parent = tuple(error["loc"][:-1])
            first = next(n for n, other in enumerate(errors) if starts_with(other, parent))
            order.append((first, 0, number))
        else:
            order.append((number, 1, number))
    return [errors[number] for *_, number in sorted(order)]


def _problem(error: ErrorDetails, document: Any, where: str, model: type[BaseModel], messages: Messages) -> Problem:
    loc, kind, value = list(error["loc"]), error["type"], error["input"]
    about_key = kind in UNKNOWN_KEYS or loc[-1:] == ["[key]"]
    if loc[-1:] == ["[key]"]:  # a mapping's key refused: the input is the key
        loc.pop()
    if loc and about_key and kind != "extra_forbidden":
        loc[-1] = value  # the key as written: pydantic's loc holds its repr, or True as 1
    item, path, pattern = _place(document, loc, messages.items)
    parent = _place(document, loc[:-1], messages.items)[1] if loc else ""
    if kind in UNKNOWN_KEYS:
        key = loc[-1] if loc else value
        reason = messages.unknown.format(key=key, hint=did_you_mean(key, _fields_at(model, loc[:-1])))
    elif kind == RULE_FILE:
        reason = error["msg"]
    elif kind == "value_error":
        reason = error["msg"].removeprefix("Value error, ")
    else:
        reason = _reason(messages.reasons, pattern, error, None if kind == "missing" else value)
    return Problem(where, item, path, parent, reason, kind, about_key)


def _place(document: Any, loc: list[Any], items: Mapping[str, tuple[str, str]]) -> tuple[str, str, str]:
    """(item, path, pattern) of `loc` in `document`: the numbered item, the field within it (list
    items counted from 1), and the pattern `Messages.reasons` are found by."""
    node, item, path, pattern = document, "", "", ""
    for position, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and not isinstance(part, bool):
            entry = node[part] if 0 <= part < len(node) else None
            if position == 1 and isinstance(loc[0], str) and loc[0] in items:
                noun, name_key = items[loc[0]]
                name = entry.get(name_key) if isinstance(entry, Mapping) else None
                item = f"{noun} {part + 1}" + (f" {name!r}" if isinstance(name, str) and name.strip() else "")
                path = ""
            else:
                path += f"[{part + 1}]"
            pattern += "[]"
            node = entry
        else:
            path += f".{part}"
            pattern += f".{part}"
            node = node.get(part) if isinstance(node, Mapping) else None
    return item, path.removeprefix("."), pattern.removeprefix(".")


def _reason(reasons: Mapping[str, str | Mapping[str, str]], pattern: str, error: ErrorDetails, value: Any) -> str:
    kind = error["type"]
    template = _template(reasons, pattern, kind)
    if template is None and pattern.endswith("[]"):
        template = _template(reasons, pattern.removesuffix("[]"), kind)
    if template is None:
        if kind == "missing":
            return "missing"
        said = (error["msg"][:1].lower() + error["msg"][1:]).replace("{", "{{").replace("}", "}}")
        template = f"expected {EXPECTED[kind]}, got {{kind}}" if kind in EXPECTED else f"{said}, got {{kind}}"
    return template.format(kind=kind_of(value), value=value)


def _template(reasons: Mapping[str, str | Mapping[str, str]], pattern: str, kind: str) -> str | None:
    for key, reason in reasons.items():
        if _matcher(key).fullmatch(pattern):
            return reason if isinstance(reason, str) else reason.get(kind, reason.get(""))
    return None


@lru_cache(maxsize=256)
def _matcher(key: str) -> re.Pattern[str]:
    return re.compile(re.escape(key).replace(r"\*", r"[^.\[\]]+"))


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The fields of the model at `loc` in `model` (where an unknown key is), or [] when none is."""
    found: Any = model
    for part in loc:
        found = _bare(found)
        if isinstance(found, type) and issubclass(found, BaseModel):
            field_info = found.model_fields.get(part) if isinstance(part, str) else None
            if field_info is None:
                return []
            found = field_info.annotation
        else:
            args = get_args(found)
            found = args[-1] if get_origin(found) in (list, tuple, dict) and args else None
    found = _bare(found)
    return list(found.model_fields) if isinstance(found, type) and issubclass(found, BaseModel) else []


def _bare(annotation: Any) -> Any:
    """`annotation` without Annotated[...] and without `| None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            others = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(others) != 1:
                return annotation
            annotation = others[0]
        else:
            return annotation
