"""Characters that must not travel from an input into the NPS DB, an email or a chat post.

- Control characters (C0, DEL, C1: NUL, escape, line breaks...): PostgreSQL refuses NUL in text,
  and the others garble a line of an email or a post.
- Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder the text
  around them wherever it is shown (a name that reads backwards, an id that looks like another);
  our templates isolate right-to-left text themselves.
- Lone surrogates, which no database encoding can store.

Identifiers and addresses holding one of them are refused (`forbidden_character`); free text is
cleaned (`clean_line`, `clean_multiline`). Marks that scripts need (ZWJ, ZWNJ, LRM, RLM) stay.
"""

from __future__ import annotations

import re
import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
CONTROL_NAMES = {0x00: "NUL", 0x09: "TAB", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE", 0x7F: "DEL"}
INVISIBLE_CATEGORIES = ("Cf", "Zl", "Zp")  # format characters and line/paragraph separators


def is_control(char: str) -> bool:
    """C0, DEL, C1, a bidi embedding/override/isolate, or a lone surrogate."""
    return unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_CONTROLS


def forbidden_character(value: str, field: str) -> str | None:
    """Why `value` cannot be an identifier or an address (a control or invisible character), or None."""
    bad = next((c for c in value if is_control(c) or unicodedata.category(c) in INVISIBLE_CATEGORIES), None)
    return None if bad is None else f"{field} contains {describe(bad)}"


def describe(char: str) -> str:
    """`the control character U+0000 (NUL)`, `the invisible character U+202E (RIGHT-TO-LEFT OVERRIDE)`."""
    code = ord(char)
    if unicodedata.category(char) == "Cc":
        name = CONTROL_NAMES.get(code)
        return f"the control character U+{code:04X}" + (f" ({name})" if name else "")
    return f"the invisible character U+{code:04X} ({unicodedata.name(char, 'unnamed')})"


def clean_line(value: str) -> str:
    """One-line free text (a name, a role): line breaks and tabs become one space, other controls go."""
    spaced = LINE_BREAKS.sub(" ", value).replace("\t", " ")
    kept = "".join(c for c in spaced if not is_control(c))
    return re.sub(r" {2,}", " ", kept).strip() if kept != value else kept


def clean_multiline(value: str) -> str:
    """Free text with line breaks (a comment): every break becomes `\\n`, tabs stay, other controls go."""
    unified = LINE_BREAKS.sub("\n", value)
    return "".join(c for c in unified if c in "\n\t" or not is_control(c))


def visible(value: str) -> str:
    """The value with its control characters written as escapes (`\\x00`, `\\u202e`), to show or store."""
    return "".join(_escape(c) if is_control(c) else c for c in value)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
