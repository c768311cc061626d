"""One kind of email for many readers: each template rendered once per variant, not per reader.

A mailing's context is the same for every reader but for a few values of each reader's own (their
name, their links), which the caller wraps in `Personal`. Everything else (the wave, the locale,
the reader's time zone, whether they have a name) makes the variant. The first reader of a variant
has the templates rendered with a marker in place of each personal value: the result, a stencil,
is text with a hole where each value goes, escaped where the template escaped it. Every later
reader of the variant gets the stencil with their values put in the holes, escaped the same way.

A template may only print a personal value (`{{ contact.name }}`, through `|e`, `isolate` or a
`{% trans %}` variable): a marker refuses anything else (its length, a comparison, an attribute, a
filter that changes the text), and that variant is then rendered in full for every reader. Before
a stencil is used, it must give, with the first reader's values and with probe values that any
text-changing filter would change (spaces around, markup, quotes, both cases, other scripts), the
same email as rendering the templates in full: else that variant too is rendered in full.
"""

from __future__ import annotations

import datetime as dt
import logging
import numbers
import re
import string
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from include.nps.core import emails, i18n
from include.nps.core.emails import Attachment, RenderedEmail

log = logging.getLogger(__name__)

VARIANTS = 512  # stencils kept in a process (least recently used dropped first)
PARTS = emails.EMAIL_PARTS
HOLE = re.compile("\ue000(\\d+)(T&q|T&amp;q|Hq)\ue001")  # a marker as str(), escape(str()) and __html__()
MARKER_EDGES = re.compile("[\ue000\ue001]")
PROBE = f"  <b>&amp;</b> \"{string.ascii_letters}\" '{string.digits}' {string.punctuation} ש山é🎉\n\tx  "
HOLE_KINDS = {"T&q": False, "T&amp;q": True, "Hq": True}  # the form a marker took: escaped or not


class Personal:
    """A value of one reader's own (name, link) in an email's context, in a dict, list or tuple of
    it: the stencil leaves a hole for it. Only non-empty text."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError("a personal value is non-empty text")
        self.value = value


class NotVerbatim(TypeError):
    """A template did more with a personal value than print it."""


class _Marker:
    """What a template sees in place of personal value `index` while its stencil is made: printed,
    escaped or formatted it leaves its mark; anything else raises."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __str__(self) -> str:
        return f"\ue000{self.index}T&q\ue001"

    def __html__(self) -> str:
        return f"\ue000{self.index}Hq\ue001"

    def __format__(self, spec: str) -> str:
        if spec:
            raise NotVerbatim(f"a personal value formatted with {spec!r}")
        return str(self)

    def __bool__(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # the template sees an undefined attribute: StrictUndefined raises

    def _refuse(self, *args: Any) -> Any:
        raise NotVerbatim("a template used a personal value other than by printing it")

    __len__ = __iter__ = __contains__ = __getitem__ = __call__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = __int__ = __float__ = _refuse
    __hash__ = None  # type: ignore[assignment]


@dataclass
class _Stencil:
    parts: dict[str, list[str | tuple[int, bool]]]  # literal text, or (personal value, escaped)


class Unkeyable(Exception):
    """A context value of a type whose equality does not say it renders the same."""


class Stencils:
    """Stencils of the emails a process sends, by (kind, locale, variant); `render(path, context,
    locale)` renders one template (`emails.render`)."""

    def __init__(self, render: Callable[[str, dict, str], str] = emails.render, variants: int = VARIANTS) -> None:
        self._render = render
        self._stencils: OrderedDict[tuple, _Stencil | None] = OrderedDict()  # None: render in full
        self._variants = variants
        self.counts = {"stencil": 0, "full": 0, "made": 0, "refused": 0}

    def render_email(self, kind: str, locale: str, to: str, context: dict[str, Any]) -> RenderedEmail:
        """`emails.render_email` of a context holding `Personal` values: from the variant's stencil."""
        locale = i18n.normalize_locale(locale)
        values: list[str] = []
        try:
            key = (kind, locale, _key(context, values))
        except Unkeyable:
            return self._full(kind, locale, to, context)
        if key in self._stencils:
            self._stencils.move_to_end(key)
            stencil = self._stencils[key]
            if stencil is not None:
                self.counts["stencil"] += 1
                return _filled(stencil, to, values)
            return self._full(kind, locale, to, context)
        return self._made(key, kind, locale, to, context, values)

    def _made(self, key: tuple, kind: str, locale: str, to: str, context: dict, values: list[str]) -> RenderedEmail:
        """The first reader of a variant: its stencil made and checked; their email rendered in full."""
        email = self._full(kind, locale, to, context)
        self.counts["made"] += 1
        stencil = self._stencil(kind, locale, context, len(values))
        if stencil is not None and not _same(_filled(stencil, to, values), email):
            stencil = None
        if stencil is not None:
            probes = [f"{index}{PROBE}" for index in range(len(values))]
            try:
                probed = self._email(kind, locale, to, _with(context, probes.__getitem__))
            except Exception:  # a template refuses the probe values: rendered in full
                stencil = None
            else:
                stencil = stencil if _same(_filled(stencil, to, probes), probed) else None
        if stencil is None:
            self.counts["refused"] += 1
            log.info(
                "%s emails in %s are rendered in full for a variant: a template does more than print", kind, locale
            )
        self._stencils[key] = stencil
        if len(self._stencils) > self._variants:
            self._stencils.popitem(last=False)
        return email

    def _full(self, kind: str, locale: str, to: str, context: dict) -> RenderedEmail:
        self.counts["full"] += 1
        values: list[str] = []
        _collect(context, values)
        return self._email(kind, locale, to, _with(context, values.__getitem__))

    def _email(self, kind: str, locale: str, to: str, context: dict) -> RenderedEmail:
        return emails.email_of(to, {part: self._render(f"email/{kind}.{part}", context, locale) for part in PARTS})

    def _stencil(self, kind: str, locale: str, context: dict, holes: int) -> _Stencil | None:
        """The stencil of `kind` for this context's variant, or None when a template does more with
        a personal value than print it."""
        marked = _with(context, _Marker)
        parts = {}
        for part in PARTS:
            try:
                text = self._render(f"email/{kind}.{part}", marked, locale)
            except Exception:  # whatever a template did with a marker: rendered in full
                return None
            pieces = _pieces(text, holes)
            if pieces is None:
                return None
            parts[part] = pieces
        return _Stencil(parts)


def _collect(value: Any, values: list[str]) -> None:
    kind = type(value)
    if kind is Personal:
        values.append(value.value)
    elif kind is dict:
        for item in value.values():
            _collect(item, values)
    elif kind is list or kind is tuple:
        for item in value:
            _collect(item, values)


def _key(value: Any, values: list[str]) -> Any:
    """What renders `value` the same (a hole for each `Personal`, its text added to `values`)."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is Personal:
        values.append(value.value)
        return Personal
    if kind is dict:
        return (dict, *((name, _key(item, values)) for name, item in value.items()))
    if kind is list or kind is tuple:
        return (kind, *(_key(item, values) for item in value))
    if kind is int or kind is bool:
        return (kind, value)
    if kind is Markup or isinstance(value, numbers.Number):  # numpy's too
        return (kind, repr(value))  # -0.0 and 0.0, 1.0 and 1.00 are equal but print apart
    if isinstance(value, dt.date):
        return (kind, value.isoformat(), getattr(value, "tzinfo", None))
    if kind is Attachment:
        return (kind, value.filename, value.mime_type, value.content_id, value.content)
    raise Unkeyable(kind.__name__)


def _with(value: Any, personal: Callable[[int], Any], counter: list[int] | None = None) -> Any:
    """`value` with each `Personal` (in a dict, list or tuple) replaced by `personal(n)`, n counting
    them in `_key`'s order."""
    counter = [0] if counter is None else counter
    kind = type(value)
    if kind is Personal:
        counter[0] += 1
        return personal(counter[0] - 1)
    if kind is dict:
        return {name: _with(item, personal, counter) for name, item in value.items()}
    if kind is list:
        return [_with(item, personal, counter) for item in value]
    if kind is tuple:
        return tuple(_with(item, personal, counter) for item in value)
    return value


def _pieces(text: str, holes: int) -> list[str | tuple[int, bool]] | None:
    """A part rendered with markers as literal text and holes (value, escaped); None when a marker
    was changed on its way (a filter that alters text)."""
    pieces: list[str | tuple[int, bool]] = []
    for index, piece in enumerate(HOLE.split(text)):
        if index % 3 == 0:
            if MARKER_EDGES.search(piece):
                return None
            pieces.append(piece)
        elif index % 3 == 1:
            if int(piece) >= holes:
                return None
            pieces.append((int(piece), False))
        else:
            hole = pieces.pop()
            assert isinstance(hole, tuple)
            pieces.append((hole[0], HOLE_KINDS[piece]))
    return pieces


def _filled(stencil: _Stencil, to: str, values: list[str]) -> RenderedEmail:
    escaped = [str(escape(value)) for value in values]
    text = {
        part: "".join(p if type(p) is str else (escaped if p[1] else values)[p[0]] for p in pieces)  # type: ignore[index]
        for part, pieces in stencil.parts.items()
    }
    return RenderedEmail(to=to, subject=" ".join(text["subject.txt"].split()), text=text["txt"], html=text["html"])


def _same(one: RenderedEmail, other: RenderedEmail) -> bool:
    return (one.subject, one.text, one.html) == (other.subject, other.text, other.html)


STENCILS = Stencils()


def render_email(kind: str, locale: str, to: str, context: dict[str, Any]) -> RenderedEmail:
    """`emails.render_email` for a context with `Personal` values, from this process's stencils."""
    return STENCILS.render_email(kind, locale, to, context)
