"""Draw one infographic card per problem and write them as SVG.

API
    draw(card) -> Figure            one 8 x 3.2 in card for a validated problem card
    render_all(cards, out_dir)      writes out_dir/NN_slug.svg, returns the paths
    check_layout(fig, min_font_pt)  human-readable layout problems ([] when fine)

CLI
    python scripts/infographics.py OUT_DIR   renders every card in problems/

Growth panels label their axes "sequence length N" and "relative cost" unless the
card's visual has optional x_label / y_label strings.

The card carries its own opaque light background (a rounded rectangle with a
subtle border; the corners outside it are transparent), dark text and
Okabe-Ito accent colours, so it reads the same embedded in a light or a dark
page. Only matplotlib's bundled DejaVu fonts are used and every glyph is
written as an SVG path, so the browser needs no font. Output is
deterministic: fixed svg.hashsalt, no date in the metadata, and a file whose
bytes would not change is left untouched (no needless rebuilds under
`mkdocs serve`).
"""
from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import matplotlib  # Figure + FigureCanvasAgg directly: no pyplot, no backend switch
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, PathPatch, Rectangle
from matplotlib.path import Path as MPath
from matplotlib.spines import Spine
from matplotlib.text import Text
from matplotlib.ticker import NullLocator

# --------------------------------------------------------------------------- style

W, H = 8.0, 3.2  # inches
DPI = 100

STYLE = {
    "font.family": ["DejaVu Sans"],
    "font.sans-serif": ["DejaVu Sans"],
    "mathtext.fontset": "dejavusans",
    "mathtext.fallback": "stixsans",
    "svg.fonttype": "path",
    "svg.hashsalt": "transformer-problems",
    "svg.image_inline": True,
    "path.simplify": True,
    "axes.unicode_minus": True,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

INK = "#1F2937"      # main text (contrast > 13:1 on the card)
INK2 = "#374151"     # summary
MUTED = "#4B5563"    # captions, labels (> 7:1)
CARD_BG = "#FBFAF7"
CARD_EDGE = "#D4D4D8"
RULE = "#E2E2E6"
GRID = "#C9CDD3"

# Okabe-Ito, colour-blind safe
BLUE, VERMILLION, GREEN, PURPLE, ORANGE, SKY = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
CATEGORY_COLOURS = {
    "Efficiency": BLUE,
    "Architecture": GREEN,
    "Scaling": VERMILLION,
    "Training & quality": PURPLE,
    "Deployment": ORANGE,
}
CURVE_STYLES = [(BLUE, "-"), (VERMILLION, "--"), (GREEN, "-."), (PURPLE, ":"), (ORANGE, "-"), (SKY, "--")]

# layout (inches)
INSET = 0.03                  # card rectangle inset from the canvas edge
STRIPE = 0.07                 # category stripe on the card's left edge
X0 = INSET + STRIPE + 0.24    # content left
X1 = W - INSET - 0.24         # content right
YT = H - INSET - 0.2          # content top
YB = INSET + 0.17             # content bottom
LEFT_W = 4.15                 # text column width
COL_GAP = 0.3
XR0 = X0 + LEFT_W + COL_GAP   # visual region left

MATRIX_N = 16


def _tint(hex_colour: str, amount: float) -> tuple:
    """Blend a colour towards white; amount 0 = colour, 1 = white."""
    rgb = np.array(to_rgb(hex_colour))
    return tuple(rgb + (1.0 - rgb) * amount)


# --------------------------------------------------------------------------- text helpers

_MATH = re.compile(r"(?<!\\)\$[^$]+(?<!\\)\$")
_TOKEN = re.compile(r"(?:(?<!\\)\$[^$]*(?<!\\)\$|\S)+")


def _has_math(s: str) -> bool:
    return bool(_MATH.search(s))


class _Layout:
    """Positions in inches from the bottom-left corner (fig.dpi_scale_trans)."""

    def __init__(self, fig: Figure):
        self.fig = fig
        self.renderer = fig.canvas.get_renderer()
        self.inv = fig.dpi_scale_trans.inverted()

    # measuring ---------------------------------------------------------
    def width(self, s: str, size: float, weight: str = "normal", math: bool | None = None) -> float:
        if not s:
            return 0.0
        if math is None:
            math = _has_math(s)
        prop = FontProperties(family="DejaVu Sans", size=size, weight=weight)
        w, _, _ = self.renderer.get_text_width_height_descent(s, prop, ismath=math)
        return w / self.fig.dpi

    def metrics(self, size: float, weight: str = "normal") -> tuple[float, float]:
        """(ascent, descent) of a line of text in inches, from the 'lp' box matplotlib uses."""
        prop = FontProperties(family="DejaVu Sans", size=size, weight=weight)
        _, h, d = self.renderer.get_text_width_height_descent("lp", prop, ismath=False)
        return (h - d) / self.fig.dpi, d / self.fig.dpi

    def extent(self, artist):
        """Bbox of an artist in inches."""
        return artist.get_window_extent(self.renderer).transformed(self.inv)

    def wrap(self, s, max_w: float, size: float, weight: str = "normal",
             math: bool = False, sep: str | None = None) -> list[str]:
        """Greedy wrap by measured width. With sep, s is a list of items joined by sep;
        an item moves whole to the next line when it fits there, and is broken between
        words only when it is wider than a line."""
        if sep is None:
            return self._wrap_words(s, "", max_w, size, weight, math)
        lines: list[str] = []
        cur = ""
        for item in s:
            cand = cur + sep + item if cur else item
            if self.width(cand, size, weight, math) <= max_w:
                cur = cand
            elif self.width(item, size, weight, math) <= max_w:
                lines.append(cur)
                cur = item
            else:
                parts = self._wrap_words(item, cur + sep if cur else "", max_w, size, weight, math)
                lines += parts[:-1]
                cur = parts[-1]
        if cur:
            lines.append(cur)
        return lines

    def _wrap_words(self, s, prefix, max_w, size, weight, math) -> list[str]:
        toks = _TOKEN.findall(s) if math else s.split()
        lines: list[str] = []
        cur = prefix
        fresh = True  # no token of s on the current line yet
        for tok in toks:
            cand = cur + ("" if fresh else " ") + tok
            if (not cur.strip()) or self.width(cand, size, weight, math) <= max_w:
                cur = cand
            else:
                lines.append(cur.rstrip())
                cur = tok
            fresh = False
        lines.append(cur)
        return lines

    # drawing -----------------------------------------------------------
    def text(self, x, y, s, size, weight="normal", color=INK, math=False, **kw) -> Text:
        return self.fig.text(x, y, s, transform=self.fig.dpi_scale_trans, fontsize=size,
                             fontweight=weight, color=color, parse_math=math,
                             fontfamily="DejaVu Sans", **kw)

    def lines(self, x, base, lines, size, lh, color=INK, math=False, **kw) -> list[Text]:
        """One text per line on baselines base, base - lh, ... (multi-line texts align
        by their glyph boxes, which shifts lines with and without ascenders)."""
        return [self.text(x, base - k * lh, line, size, color=color, math=math, va="baseline", **kw)
                for k, line in enumerate(lines)]

    def box(self, x, y, w, h, r, **kw) -> FancyBboxPatch:
        p = FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={r}",
                           transform=self.fig.dpi_scale_trans, **kw)
        self.fig.add_artist(p)
        return p

    def axes(self, x, y, w, h) -> Axes:
        return self.fig.add_axes((x / W, y / H, w / W, h / H))


# --------------------------------------------------------------------------- blocks

def _header_and_summary(L: _Layout, card: dict, accent: str, title_sizes, summary_size) -> tuple[list, float]:
    """Badge, category chip, title and summary from the top of the text column.
    Returns the artists and the lowest y used."""
    arts = []
    row_h = 0.27
    yc = YT - row_h / 2
    badge = L.text(X0 + 0.1, yc, f"Problem {card['number']}", 9, "bold", "white",
                   va="center_baseline", ha="left")
    arts.append(badge)
    bw = L.width(badge.get_text(), 9, "bold") + 0.2
    arts.append(L.box(X0, YT - row_h, bw, row_h, 0.07, facecolor=INK, edgecolor="none", zorder=1))
    badge.set_zorder(2)

    cx = X0 + bw + 0.12
    cat = card["category"]
    chip = L.text(cx + 0.1, yc, cat, 8.5, "bold", INK, va="center_baseline", ha="left", zorder=2)
    arts.append(chip)
    cw = L.width(cat, 8.5, "bold") + 0.2
    arts.append(L.box(cx, YT - row_h + 0.01, cw, row_h - 0.02, 0.12, facecolor=_tint(accent, 0.82),
                      edgecolor=accent, linewidth=1.0, zorder=1))

    y = YT - row_h - 0.13
    title = card["title"]
    # one line if that needs at most two size steps down, else the largest size on
    # two lines, else the smallest size
    lines = None
    for max_lines, sizes in ((1, title_sizes[:3]), (2, title_sizes), (99, title_sizes[-1:])):
        for size in sizes:
            lines = L.wrap(title, LEFT_W, size, "bold")
            if len(lines) <= max_lines:
                break
        if len(lines) <= max_lines:
            break
    t = L.text(X0, y, "\n".join(lines), size, "bold", INK, va="top", linespacing=1.1)
    arts.append(t)
    y = L.extent(t).y0 - 0.07

    lines = L.wrap(card["summary"], LEFT_W, summary_size)
    s = L.text(X0, y, "\n".join(lines), summary_size, "normal", INK2, va="top", linespacing=1.25)
    arts.append(s)
    return arts, L.extent(s).y0


def _formula_and_caption(L: _Layout, card: dict, y_bottom: float, formula_size, caption_size) -> tuple[list, float]:
    """Formula (large) with its caption underneath, anchored at y_bottom.
    Returns the artists and the highest y used."""
    vis = card["visual"]
    cap_lines = L.wrap(vis["caption"], LEFT_W, caption_size)
    cap = L.text(X0, y_bottom, "\n".join(cap_lines), caption_size, "normal", MUTED, va="bottom",
                 linespacing=1.2)
    top = L.extent(cap).y1 + 0.05
    size = formula_size
    f = L.text(X0, top, vis["formula"], size, "normal", INK, math=True, va="bottom")
    while L.extent(f).width > LEFT_W and size > 12:
        size -= 1
        f.set_fontsize(size)
    return [cap, f], L.extent(f).y1


def _fixes(L: _Layout, card: dict) -> float:
    """'Fixes: a · b · c' along the bottom; returns the top of the block."""
    names = [s["name"].strip() for s in card["solutions"]]
    for size, max_lines in ((9, 2), (8.5, 2), (8, 3), (8, 99)):
        label_w = L.width("Fixes:", size, "bold") + 0.08
        lines = L.wrap(names, X1 - X0 - label_w, size, sep=" · ")
        if len(lines) <= max_lines:
            break
    # one text per line on fixed baselines, so the bold label shares the first baseline
    lh = size * 1.3 / 72
    base = YB + 0.25 * size / 72 + (len(lines) - 1) * lh
    first = L.lines(X0 + label_w, base, lines, size, lh)[0]
    L.text(X0, base, "Fixes:", size, "bold", INK, va="baseline")
    top = L.extent(first).y1
    rule_y = top + 0.09
    L.fig.add_artist(Line2D([X0, X1], [rule_y, rule_y], transform=L.fig.dpi_scale_trans,
                            color=RULE, linewidth=1.0))
    return rule_y


# --------------------------------------------------------------------------- visuals

def _eval_curve(expr: str, n: np.ndarray) -> np.ndarray:
    # cards.py restricts expr to arithmetic in n with log and sqrt; no builtins either way
    code = compile(expr, "<curve>", "eval")
    with np.errstate(all="ignore"):
        y = eval(code, {"__builtins__": {}}, {"n": n, "log": np.log, "sqrt": np.sqrt})  # noqa: S307
    y = np.broadcast_to(np.asarray(y, dtype=float), n.shape).copy()
    y[~np.isfinite(y)] = np.nan
    return y


def _growth(L: _Layout, card: dict, accent: str, x0, y0, x1, y1):
    curves = card["visual"]["curves"]
    ax = L.axes(x0 + 0.25, y0 + 0.27, x1 - x0 - 0.25, y1 - y0 - 0.27)
    n = np.linspace(1.0, 8.0, 71)
    ys = [_eval_curve(c["expr"], n) for c in curves]
    peak = max((np.nanmax(np.abs(y)) for y in ys if np.isfinite(y).any()), default=1.0) or 1.0
    for i, (c, y) in enumerate(zip(curves, ys)):
        colour, ls = CURVE_STYLES[i % len(CURVE_STYLES)]
        ax.plot(n, y / peak, color=colour, linestyle=ls, linewidth=2.0, label=c["label"],
                solid_capstyle="round", dash_capstyle="round")
    ax.set_xlim(1, 8)
    ax.set_ylim(0, 1.06)
    ax.set_facecolor("none")
    ax.xaxis.set_major_locator(NullLocator())
    ax.yaxis.set_major_locator(NullLocator())
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9CA3AF")
    ax.set_xlabel(card["visual"].get("x_label", "sequence length N"), fontsize=9, color=MUTED, labelpad=4)
    ax.set_ylabel(card["visual"].get("y_label", "relative cost"), fontsize=9, color=MUTED, labelpad=4)
    fs = 9 if len(curves) <= 3 else 8
    ax.legend(loc="best", fontsize=fs, frameon=False, handlelength=2.0, borderaxespad=0.3,
              labelcolor=INK, labelspacing=0.35)


def _mask(pattern: str, n: int = MATRIX_N) -> np.ndarray:
    i, j = np.indices((n, n))
    causal = j <= i
    if pattern == "full":
        m = np.ones((n, n), bool)
    elif pattern == "causal":
        m = causal
    elif pattern == "sliding":
        m = np.abs(i - j) <= 2
    elif pattern == "strided":
        stride = 4
        m = causal & (((i - j) < stride) | ((i - j) % stride == 0))
    elif pattern == "block":
        m = (i // 4) == (j // 4)
    elif pattern == "global":
        m = (np.abs(i - j) <= 1) | (i < 2) | (j < 2)
    elif pattern == "none":
        m = np.zeros((n, n), bool)
    else:
        raise ValueError(f"unknown matrix pattern {pattern!r}")
    return m


def _mask_path(mask: np.ndarray) -> MPath:
    """One compound path: each horizontal run of filled cells is one rectangle."""
    verts, codes = [], []
    for r, row in enumerate(mask):
        c = 0
        while c < len(row):
            if row[c]:
                s = c
                while c < len(row) and row[c]:
                    c += 1
                verts += [(s, r), (c, r), (c, r + 1), (s, r + 1), (s, r)]
                codes += [MPath.MOVETO, MPath.LINETO, MPath.LINETO, MPath.LINETO, MPath.CLOSEPOLY]
            else:
                c += 1
    if not verts:
        return None
    return MPath(verts, codes)


def _grid_path(n: int) -> MPath:
    verts, codes = [], []
    for k in range(1, n):
        verts += [(k, 0), (k, n), (0, k), (n, k)]
        codes += [MPath.MOVETO, MPath.LINETO, MPath.MOVETO, MPath.LINETO]
    return MPath(verts, codes)


def _matrix(L: _Layout, card: dict, accent: str, x0, y0, x1, y1):
    pats = card["visual"]["patterns"]
    k = len(pats)
    gap = 0.2 if k > 1 else 0.0
    rw, rh = x1 - x0, y1 - y0
    label_gap = 0.07
    side = min((rw - gap * (k - 1)) / k, 1.6)
    for size in (9, 8.5, 8):
        lh = size * 1.2 / 72
        asc, desc = L.metrics(size)
        for _ in range(3):  # side <-> label height converge quickly
            wrap_w = side + gap * 0.8
            labels = [L.wrap(p["label"], wrap_w, size, math=_has_math(p["label"])) for p in pats]
            nlines = max(len(lab) for lab in labels)
            label_h = (nlines - 1) * lh + asc + desc
            side = min(side, rh - label_h - label_gap)
        if nlines <= 2:
            break
    total_w = k * side + (k - 1) * gap
    total_h = side + label_gap + label_h
    left = x0 + (rw - total_w) / 2
    top = y0 + (rh + total_h) / 2
    n = MATRIX_N
    grid = _grid_path(n)
    for idx, (p, lab) in enumerate(zip(pats, labels)):
        px = left + idx * (side + gap)
        ax = L.axes(px, top - side, side, side)
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)  # row 0 (first query) at the top
        ax.set_axis_off()
        ax.add_patch(Rectangle((0, 0), n, n, facecolor="white", edgecolor="none"))
        mp = _mask_path(_mask(p["pattern"]))
        if mp is not None:
            ax.add_patch(PathPatch(mp, facecolor=accent, edgecolor="none", linewidth=0))
        ax.add_patch(PathPatch(grid, facecolor="none", edgecolor=GRID, linewidth=0.4))
        ax.add_patch(Rectangle((0, 0), n, n, facecolor="none", edgecolor="#6B7280", linewidth=0.9,
                               clip_on=False))
        L.lines(px + side / 2, top - side - label_gap - asc, lab, size, lh,
                math=_has_math(p["label"]), ha="center")


def _flow(L: _Layout, card: dict, accent: str, x0, y0, x1, y1):
    steps = card["visual"]["steps"]
    bw = x1 - x0
    for size, pad, agap in ((9, 0.07, 0.15), (8.5, 0.06, 0.13), (8, 0.05, 0.11), (8, 0.035, 0.09)):
        lh = size * 1.2 / 72
        asc, desc = L.metrics(size)
        wrapped = [L.wrap(s, bw - 0.2, size, math=_has_math(s)) for s in steps]
        heights = [(len(w) - 1) * lh + asc + desc + 2 * pad for w in wrapped]
        total = sum(heights) + agap * (len(steps) - 1)
        if total <= y1 - y0:
            break
    y = y0 + (y1 - y0 + total) / 2
    fill = _tint(accent, 0.86)
    for i, (lines, h) in enumerate(zip(wrapped, heights)):
        L.box(x0, y - h, bw, h, 0.06, facecolor=fill, edgecolor=accent, linewidth=1.1, zorder=1)
        L.lines(x0 + bw / 2, y - pad - asc, lines, size, lh, math=_has_math(steps[i]),
                ha="center", zorder=2)
        if i < len(steps) - 1:
            arrow = FancyArrowPatch((x0 + bw / 2, y - h - 0.01), (x0 + bw / 2, y - h - agap + 0.01),
                                    arrowstyle="-|>", mutation_scale=9, color="#6B7280", linewidth=1.2,
                                    shrinkA=0, shrinkB=0, transform=L.fig.dpi_scale_trans)
            L.fig.add_artist(arrow)
        y -= h + agap


VISUALS = {"growth": _growth, "matrix": _matrix, "flow": _flow}

# text-column presets, tried in order until title+summary clear the formula block
_PRESETS = [
    # largest title size, summary, formula, caption
    (15, 10, 22, 9),
    (14, 9.5, 20, 9),
    (13, 9, 18, 8.5),
    (12, 8.5, 16, 8),
    (11, 8, 14, 8),
]
_TITLE_SIZES = (15, 14, 13, 12, 11, 10)


# --------------------------------------------------------------------------- public API

def draw(card: dict) -> Figure:
    """One infographic card (8 x 3.2 in) for a validated problem card."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(W, H), dpi=DPI, facecolor="none")
        FigureCanvasAgg(fig)
        L = _Layout(fig)
        accent = CATEGORY_COLOURS.get(card["category"], BLUE)

        card_patch = L.box(INSET, INSET, W - 2 * INSET, H - 2 * INSET, 0.16,
                           facecolor=CARD_BG, edgecolor=CARD_EDGE, linewidth=1.2, zorder=0)
        card_patch.set_gid("card")
        stripe = Rectangle((INSET, INSET), STRIPE, H - 2 * INSET, transform=fig.dpi_scale_trans,
                           facecolor=accent, edgecolor="none", zorder=0.5)
        fig.add_artist(stripe)
        stripe.set_clip_path(card_patch)

        y_main = _fixes(L, card) + 0.13

        for i, (tmax, ssize, fsize, csize) in enumerate(_PRESETS):
            tsizes = [t for t in _TITLE_SIZES if t <= tmax]
            top_arts, y_low = _header_and_summary(L, card, accent, tsizes, ssize)
            bot_arts, y_high = _formula_and_caption(L, card, y_main, fsize, csize)
            if y_low - y_high >= 0.1 or i == len(_PRESETS) - 1:
                break
            for a in top_arts + bot_arts:
                a.remove()

        VISUALS[card["visual"]["kind"]](L, card, accent, XR0, y_main, X1, YT)
    return fig


_GLYPH_DEF = re.compile(r'<path id="([^"]+)" d="')
_GLYPH_USE = re.compile(r'<use xlink:href="#([^"]+)"(?: transform="translate\(([-\d.e]+) ([-\d.e]+)\)")?/>')


def _num(v: str) -> str:
    """Round a glyph offset (font units, ~0.1 pt per 1000) to 1 decimal."""
    r = f"{float(v):.1f}".rstrip("0").rstrip(".")
    return "0" if r in ("-0", "") else r


def _compact_svg(svg: str) -> str:
    """Shrink matplotlib's SVG without changing what it draws: short glyph ids,
    glyph offsets as x/y on <use> rounded to 0.1 font unit, no indentation."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    glyphs = {}
    for gid in _GLYPH_DEF.findall(svg):
        if gid in glyphs:
            continue
        short = f"g{len(glyphs):x}"
        while short in ids:
            short = "_" + short
        glyphs[gid] = short

    def use(m):
        out = f'<use xlink:href="#{m.group(1)}"'
        if m.group(2) is not None:
            x, y = _num(m.group(2)), _num(m.group(3))
            if x != "0":
                out += f' x="{x}"'
            if y != "0":
                out += f' y="{y}"'
        return out + "/>"

    svg = _GLYPH_USE.sub(use, svg)
    svg = re.sub(r'(xlink:href="#|<path id=")([^"]+)"',
                 lambda m: f'{m.group(1)}{glyphs.get(m.group(2), m.group(2))}"', svg)
    svg = re.sub(r"\n[ \t]+", "\n", svg)   # indentation (also inside path data: XML whitespace)
    svg = re.sub(r" \n", "\n", svg)
    return svg


def _svg_bytes(fig: Figure) -> bytes:
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", facecolor="none", edgecolor="none",
                    metadata={"Date": None})
    return _compact_svg(buf.getvalue()).encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> bool:
    """Write data to path via a temp file + os.replace; False if the file already had it."""
    if path.exists() and path.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def render_all(cards, out_dir) -> list[Path]:
    """Write out_dir/NN_slug.svg for every card; returns the paths in card order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for card in cards:
        fig = draw(card)
        path = out / f"{card['number']:02d}_{card['slug']}.svg"
        _write_atomic(path, _svg_bytes(fig))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- layout check

def _drawn_texts(fig: Figure) -> list[Text]:
    """Visible, non-empty texts that a draw actually renders (respects invisible
    parents, axes switched off, and tick labels outside the view interval)."""
    found: list[Text] = []

    def walk(a):
        if not a.get_visible():
            return
        if isinstance(a, Text):
            if a.get_text().strip():
                found.append(a)
            return
        if isinstance(a, Axis):
            a.get_majorticklabels()  # refreshes tick label texts
            a.get_minorticklabels()
            lo, hi = sorted(a.get_view_interval())
            eps = (hi - lo) * 1e-9
            kids = [a.label, a.offsetText]
            for tick in a.get_major_ticks() + a.get_minor_ticks():
                if lo - eps <= tick.get_loc() <= hi + eps:
                    kids += [tick.label1, tick.label2]
            for k in kids:
                walk(k)
            return
        kids = a.get_children()
        if isinstance(a, Axes) and not a.axison:
            kids = [k for k in kids if not isinstance(k, (Axis, Spine))]
        for k in kids:
            walk(k)

    walk(fig)
    return found


def _overlap(a, b, tol):
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def _outside(inner, outer, tol):
    return (inner.x0 < outer.x0 - tol or inner.y0 < outer.y0 - tol
            or inner.x1 > outer.x1 + tol or inner.y1 > outer.y1 + tol)


def check_layout(fig: Figure, min_font_pt: float = 8, tol_px: float = 1.0) -> list[str]:
    """Layout problems of a figure as human-readable strings; [] when fine.

    Reports: two drawn texts whose bounding boxes overlap (more than tol_px in both
    directions), a figure-level text overlapping an axes, a text or axes leaving the
    canvas (or the card background, a patch with gid 'card', when there is one), and
    any text smaller than min_font_pt.
    """
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems: list[str] = []

    def name(t):
        s = " ".join(t.get_text().split())
        return repr(textwrap.shorten(s, 40, placeholder="…"))

    card = next((p for p in fig.patches if p.get_gid() == "card" and p.get_visible()), None)
    card_box = card.get_window_extent(renderer) if card is not None else None

    texts = _drawn_texts(fig)
    boxes = [t.get_window_extent(renderer) for t in texts]
    for t, b in zip(texts, boxes):
        size = t.get_fontsize()
        if size < min_font_pt - 1e-9:
            problems.append(f"text {name(t)} is {size:g} pt, below the {min_font_pt:g} pt minimum")
        if _outside(b, canvas, tol_px):
            problems.append(f"text {name(t)} leaves the canvas (extent {_fmt(b)}, canvas {_fmt(canvas)})")
        elif card_box is not None and _outside(b, card_box, tol_px):
            problems.append(f"text {name(t)} leaves the card background (extent {_fmt(b)})")
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if _overlap(boxes[i], boxes[j], tol_px):
                problems.append(f"text {name(texts[i])} overlaps text {name(texts[j])}")

    axes = [ax for ax in fig.axes if ax.get_visible()]
    ax_boxes = [ax.get_window_extent(renderer) for ax in axes]
    for k, (ax, b) in enumerate(zip(axes, ax_boxes)):
        label = f"axes {k}" + (f" ({ax.get_label()})" if ax.get_label() else "")
        if _outside(b, canvas, tol_px):
            problems.append(f"{label} leaves the canvas (extent {_fmt(b)})")
        elif card_box is not None and _outside(b, card_box, tol_px):
            problems.append(f"{label} leaves the card background (extent {_fmt(b)})")
        for t, tb in zip(texts, boxes):
            if t.axes is None and _overlap(tb, b, tol_px):
                problems.append(f"text {name(t)} overlaps {label}")
    return problems


def _fmt(b) -> str:
    return f"x {b.x0:.0f}..{b.x1:.0f}, y {b.y0:.0f}..{b.y1:.0f} px"


# --------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python scripts/infographics.py OUT_DIR", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cards as cards_mod

    cards = cards_mod.load_cards()
    if not cards:
        print(f"no cards in {cards_mod.CARDS_DIR}", file=sys.stderr)
        return 1
    for path in render_all(cards, argv[0]):
        print(f"{path} ({path.stat().st_size / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
