"""A wave's comments as the comment classifier split and classified them, classified once and kept
in the NPS DB (`comment_parts`), so that the flash results and the retrospective read the same
classification instead of each classifying every comment again.

`keep` classifies the comments that have no kept classification: new ones, ones changed since (a
new revision of the response) and ones kept by another classifier or themes file
(`comment_themes.classifier_key`); a re-run finds nothing left, and processes classifying at once
write the same rows. `kept` reads them back as `Parts`.

`Parts` is what the analysis (`retrospective`) reads: a compact frame, one row per part in the
order `retrospective.classify_comments` gives them (lowest score first, then by contact, then the
part's place in its comment) with who said it, their score, its kind and theme, and `load`, which
gives the parts at some positions of that frame in full (text, account, locale). Made from a list
of classified parts (`listed`) or read from the NPS DB (`kept`: texts are read only when shown).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, text

from include.nps.core import storage
from include.nps.wave import bulk_reads
from include.nps.wave.comment_themes import CommentClassifier, Themes, classifier_key

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("wave_id", "contact_id", "part", "revision", "classifier", "kind", "theme", "matched", "text")
KEYS = ("wave_id", "contact_id", "part")
FRAME_COLUMNS = ["contact_id", "score", "kind", "theme"]
CLASSIFY_BATCH = 5_000  # comments classified, then written, at a time
LOAD_BATCH = 2_000  # respondents whose parts' texts are read in one query
REMEMBERED = 50_000  # comments, and parts, whose classification a run remembers


class Parts:
    """Classified comment parts (see the module docstring): `frame` and `load`."""

    frame: pd.DataFrame

    def load(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """The parts at `positions` of `frame`, in full, as `classify_comments` gives them."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.frame)

    def of_kind(self, kind: str) -> Iterator[tuple[int, str | None, str | None, str]]:
        """Every part of `kind`, lowest score first, as (score, account name, theme, text); read
        as it is consumed (memory holds a batch)."""
        frame = self.frame
        chosen = positions(frame[frame["kind"] == kind])
        for start in range(0, len(chosen), LOAD_BATCH):
            for part in self.load(chosen[start : start + LOAD_BATCH]):
                yield part["score"], part["account_name"], part["theme"], part["comment"]


class _Listed(Parts):
    def __init__(self, parts: list[dict[str, Any]]) -> None:
        import pandas as pd

        self.parts = parts
        self.frame = pd.DataFrame(
            {column: [part[column] for part in parts] for column in FRAME_COLUMNS}, columns=FRAME_COLUMNS
        )

    def load(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        return [self.parts[position] for position in positions]


class _Kept(Parts):
    def __init__(self, engine: Engine, wave_id: str, key: str, frame: pd.DataFrame) -> None:
        self.engine, self.wave_id, self.key, self.frame = engine, wave_id, key, frame

    def load(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        if not len(positions):
            return []
        wanted = self.frame.iloc[list(positions)]
        statement = text(storage.query("comment_part_texts")).bindparams(bindparam("contact_ids", expanding=True))
        with self.engine.connect() as conn:
            rows = conn.execute(
                statement,
                {"wave_id": self.wave_id, "classifier": self.key, "contact_ids": sorted(set(wanted["contact_id"]))},
            ).all()
        by_key = {(row.contact_id, row.part): row for row in rows}
        keys = zip(wanted["contact_id"], wanted["part"], strict=True)
        return [_part(by_key[key]._mapping) for key in keys if key in by_key]  # one classified anew since: left out

    def of_kind(self, kind: str) -> Iterator[tuple[int, str | None, str | None, str]]:
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=LOAD_BATCH).execute(
                text(storage.query("comment_parts_of_kind")),
                {"wave_id": self.wave_id, "classifier": self.key, "kind": kind},
            )
            for row in result:
                yield int(row.score), row.account_name, row.theme, row.comment


def _part(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "contact_id": row["contact_id"],
        "account_name": row["account_name"],
        "score": int(row["score"]),
        "locale": row["locale"] or "en",
        "comment": row["comment"],
        "kind": row["kind"],
        "theme": row["theme"],
        "matched": json.loads(row["matched"]),
    }


def listed(parts: list[dict[str, Any]] | Parts) -> Parts:
    """`parts` (a list of classified parts, in their order) as `Parts`."""
    return parts if isinstance(parts, Parts) else _Listed(parts)


def keep(engine: Engine, wave_id: str, themes: Themes, sorter: CommentClassifier) -> int:
    """Classify the wave's comments that have no kept classification (see the module docstring) and
    keep them; return how many comments were classified now."""
    key = classifier_key(themes, sorter)
    pending = bulk_reads.frame(engine, storage.query("unclassified_comments"), wave_id=wave_id, classifier=key)
    remembered = _Remembered(sorter)  # the same sentence ("Great support!") is classified once a run
    for start in range(0, len(pending), CLASSIFY_BATCH):
        rows, again = _classified(wave_id, key, pending.iloc[start : start + CLASSIFY_BATCH], remembered)
        with engine.begin() as conn:
            if again:
                conn.execute(text(storage.query("drop_comment_parts_beyond")), again)
            storage.bulk_upsert(conn, "comment_parts", COLUMNS, rows, KEYS, COLUMNS[3:])
    return len(pending)


class _Remembered:
    """A classifier's answers remembered for the run (`REMEMBERED` each at most): a comment or part
    written again, in the same language (and for a part, with the same score), is not read again."""

    def __init__(self, sorter: CommentClassifier) -> None:
        self.split = functools.lru_cache(maxsize=REMEMBERED)(sorter.split)
        self.classify = functools.lru_cache(maxsize=REMEMBERED)(sorter.classify)


def _classified(
    wave_id: str, key: str, comments: pd.DataFrame, sorter: CommentClassifier | _Remembered
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """The rows of `comments`' parts (a comment with none: one row without a kind), and for the
    comments classified before, how many parts they keep."""
    rows: list[tuple[Any, ...]] = []
    again: list[dict[str, Any]] = []
    for comment in comments.itertuples(index=False):
        locale = comment.locale or "en"
        texts = sorter.split(str(comment.comment), locale)
        head = (wave_id, comment.contact_id)
        for number, part in enumerate(texts):
            found = sorter.classify(part, locale, int(comment.score))
            matched = json.dumps(list(found.matched), ensure_ascii=False)
            rows.append((*head, number, int(comment.revision), key, found.kind, found.theme, matched, part))
        if not texts:
            rows.append((*head, 0, int(comment.revision), key, None, None, "[]", ""))
        if comment.kept:
            again.append({"wave_id": wave_id, "contact_id": comment.contact_id, "parts": max(len(texts), 1)})
    return rows, again


def kept(engine: Engine, wave_id: str, themes: Themes, sorter: CommentClassifier) -> Parts:
    """The wave's classified comments that count, classifying first what is not kept yet."""
    keep(engine, wave_id, themes, sorter)
    key = classifier_key(themes, sorter)
    frame = bulk_reads.frame(engine, storage.query("comment_parts"), wave_id=wave_id, classifier=key)
    frame["score"] = frame["score"].astype("int64")
    frame["part"] = frame["part"].astype("int64")
    frame = frame.sort_values(["score", "contact_id", "part"], kind="stable", ignore_index=True)
    for column in ("kind", "theme"):
        frame[column] = frame[column].astype("category")
    return _Kept(engine, wave_id, key, frame)


def positions(frame: pd.DataFrame) -> list[int]:
    """The positions (in `Parts.frame`) of the rows of a slice of it."""
    return frame.index.tolist()


def in_order(parts: Parts, kinds: Iterable[str]) -> dict[str, list[int]]:
    """Per kind, the positions of its parts, in order."""
    return {kind: positions(parts.frame[parts.frame["kind"] == kind]) for kind in kinds}
