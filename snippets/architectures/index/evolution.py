"""The ten architectures of this section on one timeline, 2017 to today.

Each model sits at the month its paper first appeared on arXiv (an arXiv id starts with that
year and month, YYMM), in a lane for its family. An arrow A -> B means that B takes its
architecture or its key mechanism from A. The ten models with a page on this site are filled
boxes; a few earlier or later models without a page are outlined, joined by dashed arrows.

Before drawing, the script checks the table: every date agrees with its arXiv id, every arrow
points forward in time and has a stated reason, every page's model descends from the original
Transformer, every family has a page. After drawing, it measures the rendered boxes and checks
that no two overlap and that no arrow passes through a box it does not connect.

Run from the repo root:  python snippets/architectures/index/evolution.py
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
TODAY = 2026  # the time axis runs to the start of this year and a little beyond

# --8<-- [start:data]
LANES = {  # family -> label, top to bottom in the figure
    "vision": "vision",
    "encoder": "encoder-only",
    "long": "long context /\nefficient\nattention",
    "decoder": "decoder-only",
    "moe": "mixture of\nexperts",
    "encdec": "encoder-\ndecoder",
}


@dataclass(frozen=True)
class Model:
    key: str
    name: str
    arxiv: str | None  # id of the paper's first arXiv version; None if it is not on arXiv
    year: int  # year and month of that first version
    month: int
    lane: str
    page: str | None  # docs/architectures/<page>.md; None: no page on this site
    builds_on: tuple[str, ...] = ()  # keys of the models it takes its architecture or key mechanism from
    what: str = ""  # what it takes from them
    source: str = ""  # where the date comes from when there is no arXiv id


MODELS = [
    Model("vanilla", "Transformer", "1706.03762", 2017, 6, "encdec", "vanilla"),
    Model("gpt", "GPT", None, 2018, 6, "decoder", "gpt", ("vanilla",),
          "the Transformer's decoder without cross-attention, trained on next-token prediction",
          source="OpenAI report 'Improving Language Understanding by Generative Pre-Training', June 2018"),
    Model("bert", "BERT", "1810.04805", 2018, 10, "encoder", "bert", ("vanilla",),
          "the Transformer's encoder, pre-trained as a masked language model"),
    Model("txl", "Transformer-XL", "1901.02860", 2019, 1, "long", "transformer-xl", ("vanilla",),
          "a Transformer language model with a memory of the previous segment and relative positions"),
    Model("sparse", "Sparse Transformer", "1904.10509", 2019, 4, "long", "sparse-transformer", ("vanilla",),
          "a Transformer decoder whose heads attend to fixed sparse patterns"),
    Model("roberta", "RoBERTa", "1907.11692", 2019, 7, "encoder", None, ("bert",),
          "BERT's architecture, trained longer on more data without next-sentence prediction"),
    Model("t5", "T5", "1910.10683", 2019, 10, "encdec", None, ("vanilla",),
          "an encoder-decoder Transformer close to the original form (Section 2.1)"),
    Model("reformer", "Reformer", "2001.04451", 2020, 1, "long", "reformer", ("vanilla",),
          "the Transformer with LSH attention and reversible layers"),
    Model("longformer", "Longformer", "2004.05150", 2020, 4, "long", "longformer", ("txl", "sparse", "roberta"),
          "relative positions and the small model's size from Transformer-XL, the large model's size from the "
          "Sparse Transformer, the pretrained model's starting weights from RoBERTa"),
    Model("gpt3", "GPT-3", "2005.14165", 2020, 5, "decoder", None, ("gpt", "sparse"),
          "GPT-2's architecture with alternating dense and locally banded sparse attention, "
          "similar to the Sparse Transformer (Section 2.1)"),
    Model("gshard", "GShard", "2006.16668", 2020, 6, "moe", None, ("vanilla",),
          "a Transformer with top-2 mixture-of-experts feed-forward layers"),
    Model("performer", "Performer", "2009.14794", 2020, 9, "long", "performer", ("vanilla",),
          "the Transformer with softmax attention estimated by random features; nothing else changes (Section 4)"),
    Model("vit", "ViT", "2010.11929", 2020, 10, "vision", "vit", ("bert",),
          "a BERT-style encoder with a [class] token, reading image patches as tokens"),
    Model("switch", "Switch Transformer", "2101.03961", 2021, 1, "moe", "switch-transformer", ("t5", "gshard"),
          "T5 with top-1 expert layers; expert capacity and the balancing loss as in GShard"),
    Model("swin", "Swin", "2103.14030", 2021, 3, "vision", None, ("vit",),
          "a vision Transformer with attention inside shifted local windows"),
    Model("llama", "LLaMA", "2302.13971", 2023, 2, "decoder", None, ("gpt3",),
          "a decoder with pre-normalization as in GPT-3, SwiGLU and rotary embeddings (Section 2.2)"),
    Model("mistral", "Mistral 7B", "2310.06825", 2023, 10, "long", None, ("llama", "longformer"),
          "LLaMA's architecture with sliding-window attention and grouped-query attention"),
    Model("mixtral", "Mixtral", "2401.04088", 2024, 1, "moe", None, ("mistral", "gshard"),
          "Mistral 7B with 8 experts per layer and top-2 routing, similar to GShard (Section 2.1)"),
    Model("modernbert", "ModernBERT", "2412.13663", 2024, 12, "encoder", None, ("bert", "longformer"),
          "a BERT-style encoder whose layers alternate sliding-window and global attention"),
    Model("gptoss", "gpt-oss", "2508.10925", 2025, 8, "moe", None, ("gpt3", "switch"),
          "a mixture-of-experts decoder whose layers alternate banded-window and dense attention"),
]
# --8<-- [end:data]

COLORS = {"vision": "#c44e52", "encoder": "#dd8452", "encdec": "#4c72b0", "moe": "#937860",
          "decoder": "#55a868", "long": "#8172b3"}


FIG_WIDTH, ROW_INCHES = 9.0, 0.42  # figure width; height of one row of boxes
ROW_HINTS = {"roberta": 1}  # RoBERTa below BERT's row, so that BERT -> ModernBERT is a straight line


def when(m: Model) -> float:
    """Position on the time axis: the middle of the paper's month."""
    return m.year + (m.month - 0.5) / 12


# --8<-- [start:checks]
def check(models: list[Model]) -> dict:
    """Internal consistency of the table; returns a few counts for the page."""
    by_key = {m.key: m for m in models}
    assert len(by_key) == len(models), "duplicate keys"
    for m in models:
        assert m.lane in LANES and 1 <= m.month <= 12, m
        if m.arxiv:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", m.arxiv), f"{m.name}: malformed arXiv id {m.arxiv}"
            yymm, number = m.arxiv.split(".")
            assert yymm == f"{m.year % 100:02d}{m.month:02d}", (
                f"{m.name}: typed {m.year}-{m.month:02d}, "
                f"but arXiv:{m.arxiv} was first submitted 20{yymm[:2]}-{yymm[2:]}")
            # arXiv numbers have 4 digits up to 1412 and 5 from 1501 on: a wrong digit count is a typo
            assert len(number) == (5 if yymm >= "1501" else 4), f"{m.name}: arXiv:{m.arxiv} has the wrong length"
        else:
            assert m.source, f"{m.name}: no arXiv id, so the date needs a source"
        assert bool(m.what) == bool(m.builds_on), f"{m.name}: every arrow needs a reason, and only arrows"
        for parent in m.builds_on:
            assert parent in by_key, f"{m.name} builds on unknown '{parent}'"
            p = by_key[parent]
            assert (p.year, p.month) < (m.year, m.month), (
                f"{m.name} ({m.year}-{m.month:02d}) cannot build on {p.name} ({p.year}-{p.month:02d}): not earlier")
    pages = [m.page for m in models if m.page]
    assert len(pages) == 10 and len(set(pages)) == 10, f"expected ten distinct pages, got {pages}"
    # every page's model descends from the original Transformer along the arrows
    children = {k: [m.key for m in models if k in m.builds_on] for k in by_key}
    seen, todo = set(), ["vanilla"]
    while todo:
        k = todo.pop()
        if k not in seen:
            seen.add(k)
            todo += children[k]
    orphans = [m.name for m in models if m.page and m.key not in seen]
    assert not orphans, f"not connected to the Transformer: {orphans}"
    assert all(any(m.lane == lane and m.page for m in models) for lane in LANES), "a family without a page"
    edges = [(p, m.key) for m in models for p in m.builds_on]
    return {"n_models": len(models), "n_pages": len(pages), "n_other": len(models) - len(pages),
            "n_arrows": len(edges),
            "n_page_to_page_arrows": sum(by_key[a].page is not None and by_key[b].page is not None for a, b in edges),
            "first": min(f"{m.year}-{m.month:02d}" for m in models),
            "last": max(f"{m.year}-{m.month:02d}" for m in models),
            "descendants_of_transformer": len(seen) - 1}
# --8<-- [end:checks]


def overlaps(a, b, gap=0.0) -> bool:
    """Do two display-space boxes (Bbox) intersect, with `gap` pixels of clearance?"""
    return not (a.x1 + gap <= b.x0 or b.x1 + gap <= a.x0 or a.y1 + gap <= b.y0 or b.y1 + gap <= a.y0)


def bezier(p0, p2, rad):
    """Control points of matplotlib's arc3 connection from p0 to p2 (a quadratic Bezier), display space."""
    p0, p2 = np.asarray(p0, float), np.asarray(p2, float)
    return p0, (p0 + p2) / 2 + rad * np.array([p2[1] - p0[1], -(p2[0] - p0[0])]), p2


def arc(p0, p2, rad, n=400):
    """(n, 2) points along that Bezier, and their parameters t."""
    b0, b1, b2 = bezier(p0, p2, rad)
    t = np.linspace(0, 1, n)[:, None]  # (n, 1)
    return (1 - t) ** 2 * b0 + 2 * (1 - t) * t * b1 + t ** 2 * b2, t[:, 0]  # (n, 2), (n,)


def sub_bezier(b0, b1, b2, t0, t1):
    """Control points of the part of a quadratic Bezier between t0 and t1 (its blossom)."""
    def blossom(u, v):
        return (1 - u) * (1 - v) * b0 + ((1 - u) * v + u * (1 - v)) * b1 + u * v * b2
    return blossom(t0, t0), blossom(t0, t1), blossom(t1, t1)


def inside(points, box, pad=0.0):
    """(n,) bool: which points lie in the display-space Bbox, grown by pad pixels."""
    x, y = points[:, 0], points[:, 1]
    return (x >= box.x0 - pad) & (x <= box.x1 + pad) & (y >= box.y0 - pad) & (y <= box.y1 + pad)


def draw(models: list[Model], path: Path, root: str = "vanilla") -> dict:
    """Draw the timeline. Returns how many label pairs overlap and how many arrows pass through
    a box other than their own two (the caller asserts both are 0).

    The root (the original Transformer) is drawn as a tall bar across all lanes at its date:
    every family starts from it, so its arrows leave it sideways into each lane."""
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none",
                         "font.family": "DejaVu Sans", "font.size": 7.5, "figure.facecolor": "white",
                         "axes.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})
    by_key = {m.key: m for m in models}
    x0, x1 = 2016.95, TODAY + 0.4
    fig = plt.figure(figsize=(FIG_WIDTH, 5))
    ax = fig.add_axes((0.125, 0.135, 0.865, 0.855))  # the width is fixed now, so label widths in years stay valid
    ax.set_xlim(x0, x1)
    renderer = fig.canvas.get_renderer()
    px_per_year = ax.get_window_extent(renderer).width / (x1 - x0)

    # 1) One box per model; measure it, then stack boxes into rows inside their lane, first fit.
    texts, row_of = {}, {}
    rows_of = {lane: [] for lane in LANES}  # rows_of[lane][r] = [(x, half width in years), ...]
    for m in sorted(models, key=when):
        if m.key == root:
            continue
        covered = m.page is not None
        t = ax.text(when(m), 0, f"{m.name}\n{m.year}-{m.month:02d}", ha="center", va="center", zorder=3,
                    fontsize=8.2, linespacing=1.1, color="white" if covered else "0.2",
                    fontweight="bold" if covered else "normal", fontstyle="normal" if covered else "italic",
                    bbox=dict(boxstyle="round,pad=0.25", lw=0.9 if covered else 0.8,
                              fc=COLORS[m.lane] if covered else "white", ec=COLORS[m.lane],
                              ls="-" if covered else (0, (2.5, 1.5))))
        t.draw(renderer)  # sizes the box around the text
        half = t.get_bbox_patch().get_window_extent(renderer).width / 2 / px_per_year + 0.04  # + clearance
        rows = rows_of[m.lane]
        # a child of the root starts a row of its own, so its arrow from the root bar is a straight line
        fits = (lambda row: not row) if root in m.builds_on else (
            lambda row: all(abs(when(m) - c) >= half + h for c, h in row))
        r = ROW_HINTS.get(m.key, next((i for i, row in enumerate(rows) if fits(row)), len(rows)))
        while r >= len(rows):
            rows.append([])
        rows[r].append((when(m), half))
        texts[m.key], row_of[m.key] = t, r

    # 2) Lanes get as many rows as they need; y is measured in rows, top lane first.
    y, lane_mid, lane_labels = 0.0, {}, []
    for i, (lane, rows) in enumerate(rows_of.items()):
        height = max(1, len(rows)) + 0.5
        lane_mid[lane] = y - height / 2
        if i % 2 == 0:
            ax.axhspan(y - height, y, color="0.96", zorder=0, lw=0)
        lane_labels.append(ax.text(x0 - 0.06, lane_mid[lane], LANES[lane], ha="right", va="center",
                                   color=COLORS[lane], fontsize=8.5, fontweight="bold", linespacing=1.1,
                                   clip_on=False))
        y -= height
    ax.set_ylim(y, 0)
    plot_h, bottom, top = -y * ROW_INCHES, 0.75, 0.06  # inches; the width, and so px_per_year, stay as they were
    fig.set_size_inches(FIG_WIDTH, plot_h + bottom + top)
    ax.set_position((0.125, bottom / (plot_h + bottom + top), 0.865, plot_h / (plot_h + bottom + top)))
    for key, t in texts.items():
        lane = by_key[key].lane
        t.set_y(lane_mid[lane] + (len(rows_of[lane]) - 1) / 2 - row_of[key])  # rows centred, first on top
    for year in range(2017, TODAY + 1):
        ax.axvline(year, color="0.86", lw=0.6, zorder=0.5)
    ax.set_xticks(range(2017, TODAY + 1))
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", length=0, labelsize=8.5)

    # The root: a bar over every lane at its date.
    rm = by_key[root]
    bar = FancyBboxPatch((when(rm) - 0.085, y + 0.15), 0.17, -y - 0.3, boxstyle="round,pad=0,rounding_size=0.05",
                         fc=COLORS[rm.lane], ec=COLORS[rm.lane], lw=0.9, zorder=3, mutation_aspect=1 / 3)
    ax.add_patch(bar)
    ax.text(when(rm), y / 2, f"{rm.name}  {rm.year}-{rm.month:02d}  (encoder-decoder): every model here builds on it",
            rotation=90, ha="center", va="center", color="white", fontweight="bold", fontsize=8, zorder=4)
    fig.canvas.draw()
    boxes = {k: t.get_bbox_patch().get_window_extent(renderer) for k, t in texts.items()}
    boxes[root] = bar.get_window_extent(renderer)
    axis_box = ax.get_window_extent(renderer)

    # 3) Arrows: parent box -> child box along the least curved arc that misses every other box.
    #    From the root bar, an arrow starts level with its child.
    def start(a, b, dy=0.0):
        return (when(by_key[a]), texts[b].get_position()[1] + dy) if a == root else texts[a].get_position()

    def blocked(a, b, rad, dy=0.0):
        pts, _ = arc(ax.transData.transform(start(a, b, dy)), ax.transData.transform(texts[b].get_position()), rad)
        pts = pts[~(inside(pts, boxes[a]) | inside(pts, boxes[b]))]  # the parts hidden under its own two boxes
        outside = (~inside(pts, axis_box, pad=-4)).sum()  # leaving the plot counts as blocked too
        return int(outside + sum(inside(pts, box, pad=2).sum() for k, box in boxes.items() if k not in (a, b)))

    crossing = []
    for m in models:
        for p in m.builds_on:
            # an arrow from the root bar may also start half a row or a row above or below its child
            options = [(r, dy) for r in np.round(np.arange(-0.36, 0.361, 0.02), 2)
                       for dy in ((0.0, 0.5, -0.5, 1.0, -1.0) if p == root else (0.0,))]
            rad, dy = min(options, key=lambda o: (blocked(p, m.key, *o) > 0, abs(o[1]), abs(o[0])))
            if blocked(p, m.key, rad, dy):
                crossing.append(f"{by_key[p].name} -> {m.name}")
            # the visible part runs from where the arc leaves the parent's box to where it meets the
            # child's; it is drawn as that piece of the Bezier, in data coordinates (so at any dpi)
            pa, pb = ax.transData.transform(start(p, m.key, dy)), ax.transData.transform(texts[m.key].get_position())
            pts, t = arc(pa, pb, rad)
            out_a, out_b = ~inside(pts, boxes[p], pad=1.5), ~inside(pts, boxes[m.key], pad=1.5)
            t0, t1 = t[np.argmax(out_a)], t[len(t) - 1 - np.argmax(out_b[::-1])]
            ctrl = ax.transData.inverted().transform(np.array(sub_bezier(*bezier(pa, pb, rad), t0, t1)))  # (3, 2)
            both = m.page is not None and by_key[p].page is not None
            curve = MplPath(ctrl, [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
            ax.add_patch(FancyArrowPatch(path=curve, arrowstyle="-|>", mutation_scale=7, zorder=2,
                                         color="0.25" if both else "0.55", lw=0.9 if both else 0.75,
                                         ls="-" if both else (0, (3, 2))))

    handles = [Patch(fc="0.45", ec="0.45", label="has a page here (year-month of its paper)"),
               Patch(fc="white", ec="0.45", ls=(0, (2.5, 1.5)), label="no page here: a related or later model"),
               Line2D([], [], color="0.25", lw=0.9, marker=">", markersize=4, label="builds on (both have pages)"),
               Line2D([], [], color="0.55", lw=0.75, ls=(0, (3, 2)), marker=">", markersize=4,
                      label="takes its architecture or a key mechanism from")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.45, -0.3 / plot_h), ncol=2, frameon=False,
              fontsize=8.2, columnspacing=1.5)
    fig.canvas.draw()
    keys = list(boxes)
    n_overlap = sum(overlaps(boxes[a], boxes[b], gap=1.0) for i, a in enumerate(keys) for b in keys[i + 1:])
    axis_box = ax.get_window_extent(renderer)
    outside = [k for k, b in boxes.items() if b.x0 < axis_box.x0 or b.x1 > axis_box.x1]
    assert not outside, f"labels outside the time axis: {outside}"
    cut = [t.get_text() for t in lane_labels if t.get_window_extent(renderer).x0 < 0]
    assert not cut, f"lane labels cut off at the left edge: {cut}"
    fig.savefig(path, format=path.suffix[1:], metadata={"Date": None} if path.suffix == ".svg" else None, dpi=130)
    plt.close(fig)
    return {"label_overlaps": n_overlap, "arrows_through_boxes": crossing,
            "rows_per_lane": {lane: len(rows) for lane, rows in rows_of.items()}}


models_by_key = {m.key: m for m in MODELS}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    counts = check(MODELS)
    layout = draw(MODELS, OUT / "evolution.svg")
    assert layout["label_overlaps"] == 0, f"{layout['label_overlaps']} pairs of labels overlap in the figure"
    assert not layout["arrows_through_boxes"], f"arrows through another box: {layout['arrows_through_boxes']}"

    pages = {m.page: {"name": m.name, "date": f"{m.year}-{m.month:02d}", "year": m.year, "arxiv": m.arxiv}
             for m in MODELS if m.page}
    results = {**counts, **layout, "pages": pages,
               "arrows": [[p, m.key] for m in MODELS for p in m.builds_on]}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    def family(m):
        return LANES[m.lane].replace("-\n", "-").replace("\n", " ")

    print(f"{'date':<8} {'model (* = page here)':<21} {'family':<35} {'arXiv':<11} builds on")
    for m in sorted(MODELS, key=when):
        print(f"{m.year}-{m.month:02d}  {m.name + (' *' if m.page else ''):<21} {family(m):<35} "
              f"{m.arxiv or '-':<11} {', '.join(models_by_key[p].name for p in m.builds_on) or '-'}")
    print(f"{counts['n_pages']} models with a page, {counts['n_other']} without; {counts['n_arrows']} arrows, all "
          f"pointing forward in time; every date matches its arXiv id; {counts['descendants_of_transformer']} "
          f"models descend from the Transformer; no labels overlap")


if __name__ == "__main__":
    main()
