"""Comments classified once and kept (`comment_parts`), on SQLite and PostgreSQL: the kept parts are
exactly what classifying the responses gives, a re-run classifies nothing, a changed answer or
another themes file is classified again, batch boundaries change nothing; and the analysis
(themes ranking, action items, quotes) gives the same from the kept parts as from a list, and the
same as the list-by-list implementation it replaced."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import comment_parts, comment_themes, responses, retrospective, waves
from include.nps.wave.comment_themes import DETRACTOR_MAX
from tests.factories import contact, planned_wave, write_csv
from tests.test_retrospective import ANSWERS

OPEN = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_engine(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture(scope="module")
def themes() -> comment_themes.Themes:
    return comment_themes.load_themes()


def seed(engine, tmp_path, extra: dict[str, tuple[int, str | None]] | None = None) -> waves.WaveParams:
    """The retrospective tests' answers (and `extra`: contact -> score, comment), every invitation sent."""
    answers = {c: (s, text) for c, _, s, _, text in ANSWERS} | (extra or {})
    rows = [contact(c, account=a, locale=loc) for c, a, _, loc, _ in ANSWERS]
    rows += [contact(c, account="X") for c in (extra or {})]
    wave = planned_wave(engine, write_csv(tmp_path / "contacts.csv", rows), start=OPEN)
    contacts = [(r["contact_id"], r["account_id"], r["email"], r["name"], r["locale"]) for r in rows]
    storage.execute(engine, "INSERT INTO accounts (account_id, name, updated_at) VALUES (:a, :n, :t)",
                    [{"a": a, "n": f"{a} Inc", "t": OPEN} for a in sorted({c[1] for c in contacts})])  # fmt: skip
    storage.execute(
        engine,
        "INSERT INTO contacts (contact_id, account_id, email, name, locale, updated_at) "
        "VALUES (:c, :a, :e, :n, :l, :t)",
        [{"c": c, "a": a, "e": e, "n": n, "l": loc, "t": OPEN} for c, a, e, n, loc in contacts],
    )
    outbox.enqueue(engine, wave.wave_id, "invitation", [(c[0], c[2]) for c in contacts])
    storage.execute(engine, "UPDATE outbox SET status = 'sent', sent_at = :t", {"t": OPEN})
    waves.set_status(engine, wave.wave_id, "open")
    storage.execute(
        engine,
        storage.query("upsert_response"),
        [
            {"wave_id": wave.wave_id, "contact_id": c, "score": s, "comment": text, "pillar_answers": "{}",
             "now": OPEN + dt.timedelta(days=1)}
            for c, (s, text) in answers.items()
        ],
    )  # fmt: skip
    return wave


def _listed(engine, wave, themes) -> list[dict]:
    frame = responses.responses_frame(engine, wave.wave_id, [])
    return retrospective.classify_comments(frame, comment_themes.KeywordClassifier(themes))


def _all(parts: comment_parts.Parts) -> list[dict]:
    return parts.load(list(range(len(parts))))


def test_the_kept_parts_are_what_classifying_gives_and_a_re_run_classifies_nothing(any_engine, tmp_path, themes):
    wave = seed(any_engine, tmp_path, {"C30": (9, "😀👍"), "C31": (8, "   ")})
    sorter = comment_themes.KeywordClassifier(themes)
    assert comment_parts.keep(any_engine, wave.wave_id, themes, sorter) == 14  # 12 comments, the emoji, the blank
    kept = comment_parts.kept(any_engine, wave.wave_id, themes, sorter)
    listed = _listed(any_engine, wave, themes)
    assert _all(kept) == listed and len(kept) == 13
    assert kept.frame[["contact_id", "score", "kind", "theme"]].astype(object).where(kept.frame.notna(), None).to_dict(
        "records"
    ) == [{k: p[k] for k in ("contact_id", "score", "kind", "theme")} for p in listed]
    assert comment_parts.keep(any_engine, wave.wave_id, themes, sorter) == 0  # the emoji and blank ones too
    markers = storage.fetch_all(any_engine, "SELECT contact_id FROM comment_parts WHERE kind IS NULL ORDER BY 1")
    assert markers == [{"contact_id": "C30"}, {"contact_id": "C31"}]


def test_a_changed_answer_or_another_themes_file_is_classified_again(any_engine, tmp_path, themes):
    wave = seed(any_engine, tmp_path)
    sorter = comment_themes.KeywordClassifier(themes)
    comment_parts.keep(any_engine, wave.wave_id, themes, sorter)
    storage.execute(  # C01 changes its answer (it had two parts): a new revision
        any_engine,
        "UPDATE responses SET score = 9, comment = 'Support is great now.', revision = revision + 1 "
        "WHERE contact_id = 'C01'",
    )
    assert comment_parts.keep(any_engine, wave.wave_id, themes, sorter) == 1
    c01 = storage.fetch_all(any_engine, "SELECT part, kind, theme, text FROM comment_parts WHERE contact_id = 'C01'")
    assert c01 == [{"part": 0, "kind": "pro", "theme": "support", "text": "Support is great now."}]
    assert _all(comment_parts.kept(any_engine, wave.wave_id, themes, sorter)) == _listed(any_engine, wave, themes)

    fewer = comment_themes.Themes(themes=themes.themes[:1], cues=themes.cues, risk=themes.risk)
    other = comment_themes.KeywordClassifier(fewer)
    assert comment_parts.keep(any_engine, wave.wave_id, fewer, other) == 12
    kept = comment_parts.kept(any_engine, wave.wave_id, fewer, other)
    assert set(kept.frame["theme"].dropna()) == {themes.themes[0].id}


def test_a_response_set_aside_does_not_count(any_engine, tmp_path, themes):
    wave = seed(any_engine, tmp_path)
    sorter = comment_themes.KeywordClassifier(themes)
    comment_parts.keep(any_engine, wave.wave_id, themes, sorter)
    storage.execute(any_engine, "UPDATE responses SET quarantine_reason = 'late' WHERE contact_id = 'C01'")
    kept = comment_parts.kept(any_engine, wave.wave_id, themes, sorter)
    assert "C01" not in set(kept.frame["contact_id"]) and len(kept) == 11


@pytest.mark.parametrize("batch", [1, 4, 11, 12, 13])  # one at a time, exactly three, two (the second of one), one
def test_batch_boundaries_change_nothing(engine, tmp_path, themes, monkeypatch, batch):
    monkeypatch.setattr(comment_parts, "CLASSIFY_BATCH", batch)
    monkeypatch.setattr(comment_parts, "LOAD_BATCH", batch)
    wave = seed(engine, tmp_path)
    sorter = comment_themes.KeywordClassifier(themes)
    kept = comment_parts.kept(engine, wave.wave_id, themes, sorter)
    listed = _listed(engine, wave, themes)
    assert _all(kept) == listed
    for kind in ("con", "pro", "suggestion"):
        expected = [(p["score"], p["account_name"], p["theme"], p["comment"]) for p in listed if p["kind"] == kind]
        assert list(kept.of_kind(kind)) == expected
        assert list(comment_parts.listed(listed).of_kind(kind)) == expected


def test_the_analysis_is_the_same_from_the_kept_parts_and_from_a_list(any_engine, tmp_path, themes):
    wave = seed(any_engine, tmp_path)
    sorter = comment_themes.KeywordClassifier(themes)
    kept = comment_parts.kept(any_engine, wave.wave_id, themes, sorter)
    listed = _listed(any_engine, wave, themes)
    ranking = retrospective.rank_themes(kept, themes, 7)
    assert ranking == retrospective.rank_themes(listed, themes, 7)
    accounts = pd.DataFrame(columns=["account_id", "account_name", "csm", "vip", "invited", "responses"])
    summary = {"response_rate": 40.0, "nps": -10.0, "detractors": 7, "pillars": {}}
    args = (summary, None, accounts)
    from_kept = retrospective.action_items(*args, kept, [], "ops@x", themes=themes, ranking=ranking)
    assert from_kept == retrospective.action_items(*args, retrospective.by_kind(listed), [], "ops@x", themes=themes)
    for item in from_kept:
        assert retrospective.item_quotes(item, kept, from_kept) == retrospective.item_quotes(item, listed, from_kept)
    assert retrospective.quotes(kept, "con", {None, "pricing"}) == retrospective.quotes(
        listed, "con", {None, "pricing"}
    )


# --- the list-by-list implementation the frame-based one replaced, as it was --------------------------------


def reference_rank(parts: list[dict], themes: comment_themes.Themes, wave_detractors: int) -> list[dict]:
    order = {theme.id: position for position, theme in enumerate(themes.themes)}
    rows: dict[str, dict] = {}
    for part in parts:
        if not part["theme"]:
            continue
        theme = themes.get(part["theme"])
        row = rows.setdefault(
            part["theme"],
            {"theme": part["theme"], "name": theme.name if theme else part["theme"],
             "owner": theme.owner if theme else None, "example": None,
             "_sets": {k: set() for k in ("d", "m", "con", "pro", "suggestion")}},
        )  # fmt: skip
        row["_sets"]["m"].add(part["contact_id"])
        row["_sets"][part["kind"]].add(part["contact_id"])
        if part["score"] <= DETRACTOR_MAX:
            row["_sets"]["d"].add(part["contact_id"])
        if row["example"] is None or (part["kind"] == "con" and row["example"]["kind"] != "con"):
            row["example"] = retrospective._quote(part)
    ranked = sorted(
        rows.values(), key=lambda r: (-len(r["_sets"]["d"]), -len(r["_sets"]["m"]), order.get(r["theme"], len(order)))
    )
    for rank, row in enumerate(ranked, start=1):
        sets = row.pop("_sets")
        counts = {"detractors": len(sets["d"]), "mentions": len(sets["m"]), "cons": len(sets["con"]),
                  "pros": len(sets["pro"]), "suggestions": len(sets["suggestion"])}  # fmt: skip
        row.update(
            rank=rank, risk=themes.risk_of(counts["detractors"], wave_detractors) if counts["cons"] else None, **counts
        )
    return ranked


def reference_items(parts: list[dict], ranking: list[dict], themes: comment_themes.Themes) -> list[tuple[str, str]]:
    """(item key, reason) of the comment items: review-cons, suggestion-<theme>, review-suggestions."""
    covered = {r["theme"] for r in ranking if r["cons"] and themes.opens_item(r["risk"])}
    found = []
    left = [p for p in parts if p["kind"] == "con" and p["theme"] not in covered]
    if left:
        names = {r["theme"]: r["name"] for r in ranking}
        position = {r["theme"]: r["rank"] for r in ranking}
        counts: dict = {}
        for part in left:
            counts[part["theme"]] = counts.get(part["theme"], 0) + 1
        ranked = sorted(counts, key=lambda t: position.get(t, len(position) + 1) if t else len(position) + 2)
        by_theme = ", ".join(f"{names.get(t, t) if t else 'no theme'} {counts[t]}" for t in ranked)
        voices = len({p["contact_id"] for p in left if p["score"] <= DETRACTOR_MAX})
        found.append(("review-cons", f"{len(left)} con(s) no item above covers ({by_theme}), {voices} from detractors"))
    suggestions = [p for p in parts if p["kind"] == "suggestion"]
    for row in ranking:
        about = [p for p in suggestions if p["theme"] == row["theme"]]
        if about:
            voices = len({p["contact_id"] for p in about})
            found.append((f"suggestion-{row['theme']}", f"{len(about)} suggestion(s) from {voices} customer(s)"))
    unthemed = [p for p in suggestions if not p["theme"]]
    if unthemed:
        voices = len({p["contact_id"] for p in unthemed})
        found.append(
            ("review-suggestions", f"{len(unthemed)} suggestion(s) from {voices} customer(s) that no theme covers")
        )
    return found


THEME_IDS = [None, "pricing", "support", "reliability", "reporting", "not-in-the-file"]
part_strategy = st.builds(
    lambda contact, score, kind, theme, text: {
        "contact_id": f"C{contact}", "account_name": f"A{contact % 3}", "score": score, "locale": "en",
        "comment": text, "kind": kind, "theme": theme, "matched": [],
    },
    st.integers(0, 12), st.integers(0, 10), st.sampled_from(["pro", "con", "suggestion"]),
    st.sampled_from(THEME_IDS), st.text(min_size=1, max_size=30),
)  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(part_strategy, max_size=40), st.integers(0, 12))
def test_the_frame_based_analysis_gives_what_the_list_based_one_gave(parts, wave_detractors):
    themes = comment_themes.load_themes()
    parts.sort(key=lambda p: p["score"])  # as classify_comments orders them
    ranking = retrospective.rank_themes(parts, themes, wave_detractors)
    assert ranking == reference_rank(parts, themes, wave_detractors)
    summary = {"response_rate": 50.0, "nps": 0.0, "detractors": wave_detractors, "pillars": {}}
    accounts = pd.DataFrame(columns=["account_id", "account_name", "csm", "vip", "invited", "responses"])
    comments = retrospective.by_kind(parts)
    items = retrospective.action_items(summary, None, accounts, comments, [], "ops@x", themes=themes)
    comment_items = [
        (i["item_key"], i["reason"]) for i in items if i["item_key"].startswith(("review-", "suggestion-"))
    ]
    flat = retrospective._flat(comments)
    assert sorted(comment_items) == sorted(reference_items(flat, reference_rank(flat, themes, wave_detractors), themes))
    for kind in ("pro", "con", "suggestion"):
        for chosen in (None, {None}, {"pricing", None}, {"support"}):
            expected = [retrospective._quote(p) for p in sorted(parts, key=lambda p: p["score"])
                        if p["kind"] == kind and (chosen is None or p["theme"] in chosen)][:3]  # fmt: skip
            assert retrospective.quotes(parts, kind, chosen) == expected
