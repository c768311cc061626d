"""The flash-results chart: NPS over the program's last waves and this wave's promoter / passive /
detractor split, as a PNG that mail clients show inline (HTML emails cannot rely on SVG).

Text is drawn in the reader's language: the labels come from `email/_flash_chart_labels.txt`
(translated like every template), Japanese and Chinese with Noto Sans CJK (Debian's
`fonts-noto-cjk`), Hebrew reordered for right-to-left display (matplotlib draws left to right).
matplotlib is imported only here, inside the function that draws.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from include.nps.core import emails, i18n

CONTENT_ID = "flash-chart"
WIDTH_PX, HEIGHT_PX, SCALE = 560, 220, 2  # shown at 560 x 220, drawn at twice that for sharp screens
# Per locale, the font families to draw with, in order: a glyph missing in one comes from the next.
FONTS = {
    "ja": ["Noto Sans CJK JP", "DejaVu Sans"],
    "zh": ["Noto Sans CJK JP", "DejaVu Sans"],  # the JP face of the collection draws every Han glyph,
}
DEFAULT_FONTS = ["DejaVu Sans", "Noto Sans CJK JP"]
COLOURS = {"promoters": "#2f855a", "passives": "#a0aec0", "detractors": "#c53030", "trend": "#2b6cb0"}


@dataclass(frozen=True)
class WavePoint:
    name: str
    nps: float


def labels(locale: str) -> dict[str, str]:
    """The chart's words in `locale`, from the translated labels template (`key: text` lines)."""
    text = emails.render("email/_flash_chart_labels.txt", {}, locale)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def visual(text: str, locale: str) -> str:
    """`text` in display order: right-to-left languages are reordered (bidi algorithm)."""
    if i18n.direction(locale) != "rtl":
        return text
    from bidi import get_display

    return get_display(text)


def flash_chart(trend: list[WavePoint], split: dict[str, int], locale: str) -> bytes:
    """The chart as PNG bytes: the trend (oldest wave first, this wave last) and the split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = labels(locale)
    with plt.rc_context({"font.family": FONTS.get(locale, DEFAULT_FONTS), "font.size": 9}):
        figure, (left, right) = plt.subplots(
            1, 2, figsize=(WIDTH_PX / 100, HEIGHT_PX / 100), dpi=100 * SCALE, gridspec_kw={"width_ratios": [3, 2]}
        )
        _draw_trend(left, trend, words, locale)
        _draw_split(right, split, words, locale)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png", facecolor="white")
        plt.close(figure)
    return out.getvalue()


def _draw_trend(axes: Any, trend: list[WavePoint], words: dict[str, str], locale: str) -> None:
    names = [visual(point.name, locale) for point in trend]
    values = [point.nps for point in trend]
    axes.plot(range(len(values)), values, marker="o", color=COLOURS["trend"])
    for x, value in enumerate(values):
        axes.annotate(f"{value:+.0f}", (x, value), textcoords="offset points", xytext=(0, 6), ha="center")
    axes.set_xticks(range(len(names)), names)
    axes.axhline(0, color="#cbd5e0", linewidth=0.8)
    low, high = min([*values, 0]), max([*values, 0])
    axes.set_ylim(low - 15, high + 15)
    axes.set_title(visual(words["trend"], locale))
    axes.spines[["top", "right"]].set_visible(False)


def _draw_split(axes: Any, split: dict[str, int], words: dict[str, str], locale: str) -> None:
    total = sum(split.values()) or 1
    start = 0.0
    for group in ("promoters", "passives", "detractors"):
        share = 100.0 * split.get(group, 0) / total
        axes.barh([0], [share], left=start, color=COLOURS[group], label=visual(f"{words[group]} {share:.0f}%", locale))
        start += share
    axes.set_xlim(0, 100)
    axes.set_yticks([])
    axes.set_xticks([])
    axes.set_title(visual(words["split"], locale))
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), frameon=False, ncol=1)
    axes.spines[["top", "right", "left", "bottom"]].set_visible(False)
