"""Infographics: every real card draws without layout problems, the layout checker
can fail, and render_all writes valid, deterministic, font-free SVG."""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import cards  # noqa: E402
import infographics  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CARD_FILES = sorted(cards.CARDS_DIR.glob("*.yaml"))
SVG_NS = "{http://www.w3.org/2000/svg}"


def _ids(p):
    return p.name if p is not None else "no-cards"


@pytest.mark.parametrize("path", CARD_FILES or [None], ids=_ids)
def test_card_layout_is_clean(path):
    assert path is not None, f"no problem cards in {cards.CARDS_DIR}"
    fig = infographics.draw(cards.load_card(path))
    w, h = fig.get_size_inches()
    assert (round(w, 2), round(h, 2)) == (8.0, 3.2)
    assert infographics.check_layout(fig) == []


# --------------------------------------------------------------------------- the checker can fail

def _fig():
    fig = Figure(figsize=(4, 2), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def test_check_layout_passes_a_clean_figure():
    fig = _fig()
    fig.text(0.1, 0.7, "left", fontsize=10)
    fig.text(0.6, 0.2, "right", fontsize=10)
    assert infographics.check_layout(fig) == []


def test_check_layout_detects_overlapping_texts():
    fig = _fig()
    fig.text(0.1, 0.5, "first label here", fontsize=10)
    fig.text(0.15, 0.52, "second label", fontsize=10)
    problems = infographics.check_layout(fig)
    assert len(problems) == 1 and "overlaps" in problems[0], problems
    assert "first label here" in problems[0] and "second label" in problems[0]


def test_check_layout_detects_text_off_canvas():
    fig = _fig()
    fig.text(0.9, 0.5, "runs off the right edge", fontsize=10)
    problems = infographics.check_layout(fig)
    assert any("leaves the canvas" in p for p in problems), problems


def test_check_layout_detects_axes_off_canvas():
    fig = _fig()
    fig.add_axes((0.5, 0.5, 0.7, 0.3)).set_axis_off()
    problems = infographics.check_layout(fig)
    assert any("axes" in p and "leaves the canvas" in p for p in problems), problems


def test_check_layout_detects_small_text():
    fig = _fig()
    fig.text(0.1, 0.5, "tiny", fontsize=5)
    problems = infographics.check_layout(fig)
    assert len(problems) == 1 and "5 pt" in problems[0], problems
    assert infographics.check_layout(fig, min_font_pt=5) == []


def test_check_layout_sees_axes_texts():
    fig = _fig()
    ax = fig.add_axes((0.2, 0.25, 0.7, 0.6))
    ax.plot([0, 1], [0, 1], label="a long legend entry")
    ax.legend(loc="upper left", fontsize=10)
    ax.set_title("a long legend entry as title", fontsize=10, y=0.72)  # lands on the legend
    problems = infographics.check_layout(fig)
    assert any("overlaps" in p for p in problems), problems


def test_check_layout_ignores_hidden_texts():
    fig = _fig()
    fig.text(0.1, 0.5, "shown", fontsize=10)
    fig.text(0.1, 0.5, "hidden", fontsize=10).set_visible(False)
    fig.text(0.1, 0.5, "", fontsize=10)
    assert infographics.check_layout(fig) == []


def test_checker_catches_a_broken_card(tmp_path):
    """A real draw() with a text forced onto the title is reported."""
    card = _sample_card()
    fig = infographics.draw(card)
    title = next(t for t in fig.texts if " ".join(t.get_text().split()) == card["title"])
    fig.text(*title.get_position(), "intruder", transform=title.get_transform(), fontsize=12,
             va="top")
    assert any("intruder" in p and "overlaps" in p for p in infographics.check_layout(fig))


# --------------------------------------------------------------------------- throwaway cards

def _sample_card(kind="growth", n_steps=5):
    visual = {
        "growth": {"kind": "growth", "formula": r"$O(N^2)$", "caption": "cost of one layer",
                   "curves": [{"label": "$N^2$", "expr": "n**2"}, {"label": "N log N", "expr": "n*log(n)"},
                              {"label": "1/log", "expr": "1/log(n)"}, {"label": "const", "expr": "1"}]},
        "matrix": {"kind": "matrix", "formula": r"$O(N w)$", "caption": "computed cells",
                   "patterns": [{"label": p.title() + " attention pattern", "pattern": p}
                                for p in ("full", "causal", "sliding", "strided")]},
        "flow": {"kind": "flow", "formula": r"$\sum_i x_i$", "caption": "steps",
                 "steps": [f"Step {i} with a rather long description of what happens here"
                           for i in range(n_steps)]},
    }[kind]
    sol = lambda name: {"name": name, "idea": "i", "trade_off": "t",  # noqa: E731
                        "paper": {"title": "p", "url": "https://arxiv.org/abs/1706.03762", "year": 2017}}
    return {
        "number": 12, "slug": f"sample_{kind}", "title": "A rather long problem title that needs wrapping",
        "category": "Training & quality",
        "summary": ("A deliberately long one-line summary that goes on and on so that the text "
                    "column has to wrap it onto several lines."),
        "visual": visual,
        "solutions": [sol("A first fix with a long descriptive name"), sol("Second fix (variant)"),
                      sol("Third approach to the problem"), sol("Fourth")],
        "papers": [],
    }


@pytest.mark.parametrize("kind", ["growth", "matrix", "flow"])
def test_long_throwaway_cards_are_clean(kind):
    assert infographics.check_layout(infographics.draw(_sample_card(kind))) == []


# --------------------------------------------------------------------------- SVG output

def test_render_all_writes_valid_svg(tmp_path):
    all_cards = cards.load_cards()
    assert all_cards, f"no problem cards in {cards.CARDS_DIR}"
    paths = infographics.render_all(all_cards, tmp_path)
    assert [p.name for p in paths] == [f"{cards.card_stem(c)}.svg" for c in all_cards]
    for p in paths:
        root = ET.parse(p).getroot()
        assert root.tag == SVG_NS + "svg", p
        # text is drawn as glyph paths: no <text>, no font files, no external refs
        assert not list(root.iter(SVG_NS + "text")), p
        data = p.read_text(encoding="utf-8")
        assert "@font-face" not in data and "<image" not in data, p
        ids = {e.get("id") for e in root.iter() if e.get("id")}
        for e in root.iter(SVG_NS + "use"):
            href = e.get("{http://www.w3.org/1999/xlink}href")
            assert href.startswith("#") and href[1:] in ids, (p, href)
        assert p.stat().st_size < 60_000, (p, p.stat().st_size)
    assert sorted(tmp_path.iterdir()) == sorted(paths), "stray temporary files left behind"


def test_render_all_is_deterministic(tmp_path):
    some = cards.load_cards()[:3]
    assert some, f"no problem cards in {cards.CARDS_DIR}"
    first = [p.read_bytes() for p in infographics.render_all(some, tmp_path / "a")]
    second = [p.read_bytes() for p in infographics.render_all(some, tmp_path / "b")]
    assert first == second
    # an unchanged file is not rewritten
    path = infographics.render_all(some[:1], tmp_path / "a")[0]
    mtime = path.stat().st_mtime_ns
    infographics.render_all(some[:1], tmp_path / "a")
    assert path.stat().st_mtime_ns == mtime
