"""The comment classifier: pros, cons and suggestions with their theme in five languages, read with
the shipped `rules/themes.yaml`; the themes file checked with readable errors; a replaceable
classifier."""

from __future__ import annotations

import textwrap

import pytest

from include.nps.wave import comment_themes
from include.nps.wave.comment_themes import Classification, KeywordClassifier


@pytest.fixture(scope="module")
def keywords() -> KeywordClassifier:
    return KeywordClassifier(comment_themes.load_themes())


# (locale, score, one sentence as customers write it, expected kind, expected theme)
TABLE = [
    ("en", 3, "Too expensive for what we use.", "con", "pricing"),
    ("en", 0, "Nobody answers our tickets.", "con", "support"),
    ("en", 1, "Outage last week cost us a full day.", "con", "reliability"),
    ("en", 4, "The new UI is confusing & slow.", "con", "usability"),
    ("en", 10, "Great support team!", "pro", "support"),
    ("en", 9, "Please add SSO.", "suggestion", "features"),
    ("en", 10, "The mobile app is slow on Android.", "con", "mobile"),  # a promoter's negative cue
    ("en", 7, "Exports to Excel would be nice.", "suggestion", "reporting"),
    ("en", 8, "Fine overall.", "suggestion", None),  # a passive without a cue
    ("en", 8, "Reliable and helpful.", "pro", None),
    ("ja", 4, "サポートの返答が遅いです。", "con", "support"),  # サポート comes before 遅い (performance)
    ("ja", 10, "とても使いやすいです。", "pro", "usability"),
    ("ja", 8, "レポート機能を追加していただけると助かります。", "suggestion", "reporting"),
    ("ja", 2, "システム障害が多すぎる", "con", "reliability"),
    ("zh", 10, "非常好用", "pro", "usability"),
    ("zh", 5, "价格太贵了", "con", "pricing"),
    ("zh", 7, "建议增加导出功能", "suggestion", "reporting"),
    ("zh", 8, "手机端太慢", "con", "mobile"),
    ("he", 3, "הממשק מסורבל", "con", "usability"),  # ה + ממשק: the one-letter prefix
    ("he", 8, "הייתי רוצה דוחות טובים יותר", "suggestion", "reporting"),
    ("he", 9, "תמיכה מעולה", "pro", "support"),
    ("he", 7, "והמחיר יקר מדי", "con", "pricing"),
    ("nb", 2, "Nedetid hver uke.", "con", "reliability"),
    ("nb", 8, "Dere bør lage en bedre mobilapp.", "suggestion", "mobile"),
    ("nb", 9, "Kundeservice er flott.", "pro", "support"),
    ("nb", 7, "Rapportene er tungvinte å lage.", "suggestion", "reporting"),
]


@pytest.mark.parametrize(("locale", "score", "text", "kind", "theme"), TABLE, ids=[f"{r[0]}-{r[2]}" for r in TABLE])
def test_comments_in_five_languages_get_their_kind_and_theme(keywords, locale, score, text, kind, theme):
    found = keywords.classify(text, locale, score)
    assert (found.kind, found.theme) == (kind, theme), found.matched


def test_every_decision_names_the_words_that_made_it(keywords):
    found = keywords.classify("Please add SSO.", "en", 9)
    assert found.matched == ["suggestion cue 'please'", "theme features 'sso'"]
    assert keywords.classify("Too expensive.", "en", 3).matched == [
        "negative cue 'expensive'",
        "theme pricing 'expensive'",
    ]
    assert keywords.classify("Fine.", "en", 2).matched == ["score 2"]


def test_a_comment_is_split_into_sentences_and_at_contrast_words(keywords):
    def parts(text: str, locale: str, score: int) -> list[tuple[str, str, str | None]]:
        found = [(part, keywords.classify(part, locale, score)) for part in keywords.split(text, locale)]
        return [(part, c.kind, c.theme) for part, c in found]

    assert parts("Great support, but too expensive. Please add SSO!", "en", 8) == [
        ("Great support", "pro", "support"),
        ("but too expensive.", "con", "pricing"),
        ("Please add SSO!", "suggestion", "features"),
    ]
    assert parts("便利ですが、料金が高すぎます。レポートを追加していただけると助かります。", "ja", 7) == [
        ("便利", "pro", None),
        ("ですが、料金が高すぎます。", "con", "pricing"),
        ("レポートを追加していただけると助かります。", "suggestion", "reporting"),
    ]
    assert parts("Bra, men dyrt.", "nb", 7) == [("Bra", "pro", None), ("men dyrt.", "con", "pricing")]
    assert parts("界面很好，但是手机端太慢。", "zh", 8) == [
        ("界面很好", "pro", "usability"),
        ("但是手机端太慢。", "con", "mobile"),
    ]
    assert parts("v2.3 is fine\n\n!!!", "en", 9) == [("v2.3 is fine", "pro", None)]  # no cut inside 2.3


def test_matching_is_normalised_and_bound_to_whole_words(keywords):
    assert keywords.classify("ＰＲＩＣＩＮＧ is unclear", "en", 5).theme == "pricing"  # full width, upper case
    assert keywords.classify("We build dashboards", "en", 9).theme == "reporting"  # not "ui" inside "build"
    assert keywords.classify("It doesn’t work", "en", 7).kind == "con"  # typographic apostrophe
    assert keywords.classify("Expensively priced", "en", 8).theme == "pricing"  # price* as a prefix
    assert keywords.classify("Supportive people", "en", 9).theme is None  # "support" is a whole word


def test_a_comment_is_read_in_its_writers_language_english_and_the_scripts_it_holds(keywords):
    assert comment_themes.reading_languages("Too slow", "ja-JP") == ["ja", "en"]
    assert comment_themes.reading_languages("料金 and תמיכה", "nb") == ["nb", "en", "he", "ja", "zh"]
    assert keywords.classify("The price is too high", "ja", 4).theme == "pricing"  # English from a ja contact
    assert keywords.classify("Men are happy", "en", 9).kind == "pro"  # nb "men" is not read for an en contact
    assert keywords.split("Men are happy", "en") == ["Men are happy"]


def test_the_shipped_themes_file_covers_every_language():
    themes = comment_themes.load_themes()
    assert [t.id for t in themes.themes][:3] == ["pricing", "support", "reliability"]
    for theme in themes.themes:
        assert set(theme.keywords) == set(comment_themes.LANGUAGES), theme.id
        assert set(theme.label) == set(comment_themes.LANGUAGES), theme.id
    assert themes.get("pricing").label_in("nb") == "Pris og verdi"
    assert themes.get("pricing").label_in("fr") == "Pricing and value"  # English when a language is missing
    for cue in ("suggestion", "negative", "positive", "contrast"):
        assert set(themes.cues[cue]) == set(comment_themes.LANGUAGES), cue
    assert themes.get("support").owner == "support-lead@vendor.example" and themes.get("pricing").owner is None
    assert "いただけると" in themes.cues["suggestion"]["ja"] and "bør" in themes.cues["suggestion"]["nb"]


def test_risk_follows_the_files_thresholds():
    themes = comment_themes.load_themes()  # high: 3 detractors or 2+ making 25%; medium: 2 or 10%
    assert themes.risk_of(3, 40) == "high"
    assert themes.risk_of(2, 8) == "high" and themes.risk_of(2, 9) == "medium"
    assert themes.risk_of(1, 1) == "medium"  # one voice is never high
    assert themes.risk_of(1, 20) == "low" and themes.risk_of(0, 20) == "low"
    assert themes.opens_item("high") and not themes.opens_item("medium")


def write(tmp_path, text: str):
    path = tmp_path / "themes.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_broken_themes_file_names_every_problem(tmp_path):
    path = write(
        tmp_path,
        """\
        version: 2
        risk:
          high: {min_detractors: 0, min_shares: 0.2}
        open_items_from: urgent
        themes:
          - id: Pricing
            name: Pricing
            label: {en: Pricing, fr: Prix, ja: ""}
            keywords: {en: [price*], no: [pris]}
          - id: support
            keywords: {en: [price*, "*"], ja: [サポート*], he: [404]}
          - id: support
            name: Support again
            owner: not-an-address
            keyword: {en: [help]}
        cues:
          suggestion: {en: [should]}
          positive: {en: [good]}
          contrast: {fr: [mais]}
        """,
    )
    with pytest.raises(comment_themes.ThemesError) as failure:
        comment_themes.load_themes(path)
    where = str(path)
    assert failure.value.problems == [
        f"{where}: version: must be 1, got 2",
        f"{where}: risk.high.min_shares: unknown field; did you mean 'min_share'?",
        f"{where}: risk.high.min_detractors: expected a whole number of at least 1, got 0",
        f"{where}: open_items_from: must be high, medium or low, got 'urgent'",
        f"{where}: theme 1 'Pricing': id: expected lowercase letters, digits, - or _ (at most 48), got 'Pricing'",
        f"{where}: theme 1 'Pricing': keywords.no: unknown language; use 'nb'",
        f"{where}: theme 1 'Pricing': label.fr: unknown language; use one of en, ja, zh, he, nb",
        f"{where}: theme 1 'Pricing': label.ja: expected a text of 1 to 100 characters, got ''",
        f"{where}: theme 2 'support': name: expected a name of 1 to 100 characters, got nothing",
        f"{where}: theme 2 'support': keywords.en[2]: '*' has no letter",
        f"{where}: theme 2 'support': keywords.ja[1]: 'サポート*': ja words match anywhere in the text already; "
        "drop the *",
        f"{where}: theme 2 'support': keywords.he[1]: expected a word or phrase, got a number 404; put it in quotes",
        f"{where}: theme 2 'support': keywords.en: 'price*' is also a keyword of theme 'Pricing'",
        f"{where}: theme 3 'support': keyword: unknown field; did you mean 'keywords'?",
        f"{where}: theme 3 'support': id: also the id of theme 2",
        f"{where}: theme 3 'support': owner: expected an email address, got 'not-an-address'",
        f"{where}: theme 3 'support': keywords: expected lists of words per language (en, ja, zh, he, nb), got nothing",
        f"{where}: theme 3 'support': keywords: expected at least one keyword in en, ja, zh, he or nb",
        f"{where}: cues.negative: missing; give its words per language",
        f"{where}: cues.contrast.fr: unknown language; use one of en, ja, zh, he, nb",
    ]
    assert str(failure.value).startswith(f"the themes file has {len(failure.value.problems)} problem(s):\n  ")


def test_a_themes_file_that_is_not_yaml_says_where(tmp_path):
    path = write(tmp_path, "version: 1\nthemes:\n  - id: a\n    id: b\n")
    with pytest.raises(comment_themes.ThemesError, match=r"line 4, column 5: not valid YAML: 'id' is given twice"):
        comment_themes.load_themes(path)
    with pytest.raises(comment_themes.ThemesError, match="no such file"):
        comment_themes.load_themes(tmp_path / "missing.yaml")


def test_the_themes_file_is_read_again_when_it_changes(tmp_path, monkeypatch):
    minimal = """\
        version: 1
        themes:
          - {id: price, name: Price, keywords: {en: [price]}}
        cues: {suggestion: {en: [should]}, negative: {en: [bad]}, positive: {en: [good]}}
        """
    path = write(tmp_path, minimal)
    monkeypatch.setenv(comment_themes.THEMES_ENV, str(path))
    assert [t.id for t in comment_themes.load_themes().themes] == ["price"]
    write(tmp_path, minimal.replace("{id: price, name: Price", "{id: cost, name: Cost"))
    import os

    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    assert [t.id for t in comment_themes.load_themes().themes] == ["cost"]


class EverythingIsACon:
    """A stand-in for another classifier (a model, a service): named by the setting."""

    def __init__(self, themes: comment_themes.Themes) -> None:
        self.first = themes.themes[0].id

    def split(self, text: str, locale: str) -> list[str]:
        return [text]

    def classify(self, text: str, locale: str, score: int) -> Classification:
        return Classification("con", self.first, ["always"])


def test_another_classifier_replaces_the_keyword_one_by_a_setting(monkeypatch):
    themes = comment_themes.load_themes()
    assert isinstance(comment_themes.classifier_from_setting(themes), KeywordClassifier)
    monkeypatch.setenv(comment_themes.CLASSIFIER_ENV, "tests.test_classifier:EverythingIsACon")
    chosen = comment_themes.classifier_from_setting(themes)
    assert chosen.classify("Great!", "en", 10) == Classification("con", "pricing", ["always"])
    with pytest.raises(comment_themes.ClassifierSettingError, match=r"use 'keyword' or 'package\.module:factory'"):
        comment_themes.classifier_from_setting(themes, "EverythingIsACon")
    with pytest.raises(comment_themes.ClassifierSettingError, match="cannot be loaded"):
        comment_themes.classifier_from_setting(themes, "tests.test_classifier:Nothing")
