"""Load and validate the problem cards in problems/NN_slug.yaml.

A card is the single source for a problem's title, category, one-liner, the
infographic's content, its fixes and its papers. A card with a missing or
wrong-typed field raises CardError naming the file, the field and what was
expected.

Fields:

    number, slug                 NN and the snake_case slug; the file is NN_slug.yaml
    title, category, summary     category is one of CATEGORIES
    visual                       kind (growth | matrix | flow), formula, caption, and
                                 the kind's own fields: curves (growth), patterns
                                 (matrix), steps (flow); a growth panel may name its
                                 axes with x_label / y_label (default "sequence
                                 length N" and "relative cost")
    solutions                    the fixes: name, idea, trade_off, paper, and optionally
                                 shown (below)
    papers                       title, url (arXiv abstract), year, contribution

A fix is either *shown* on the problem's page or *cited* (its paper only). A shown
fix names the snippet that runs it and checks it:

    shown: sliding_window            snippets/problems/NN_slug/sliding_window.py
    shown: encodings:offset          ... and the section [start:offset] in it, which
                                     the page includes with --8<-- "...encodings.py:offset"

The file (and the section, if named) must exist; a fix without `shown` is cited.
Name a snippet only if it really runs that fix and asserts what the fix is for.
The page's {{ solutions_table }} links each shown fix to the section of the page
that includes that snippet (the build fails if the page does not include it), and
writes "cited" for the others.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CARDS_DIR = ROOT / "problems"
SNIPPETS_DIR = ROOT / "snippets" / "problems"

CATEGORIES = ["Efficiency", "Architecture", "Scaling", "Training & quality", "Deployment"]
VISUAL_KINDS = ["growth", "matrix", "flow"]
MATRIX_PATTERNS = ["full", "causal", "sliding", "strided", "block", "global", "none"]
ARXIV = re.compile(r"^https://arxiv\.org/abs/\d{4}\.\d{4,5}$")
SHOWN = re.compile(r"^(\w+)(?::([\w-]+))?$")  # snippet name, optional section


class CardError(ValueError):
    """A card is malformed; the message names file, field and expectation."""


def _paper(where: str) -> dict:
    return {
        "title": (str, f"{where}.title", "the paper's title"),
        "url": (str, f"{where}.url", "an arXiv abstract URL https://arxiv.org/abs/NNNN.NNNNN"),
        "year": (int, f"{where}.year", "the publication year as an integer"),
    }


def _check(path: Path, obj, field: str, typ, what: str):
    if obj is None:
        raise CardError(f"{path}: field '{field}' is missing (expected {what})")
    if typ is int and isinstance(obj, bool) or not isinstance(obj, typ):
        raise CardError(
            f"{path}: field '{field}' has type {type(obj).__name__} "
            f"(expected {typ.__name__}: {what})"
        )
    if typ is str and not obj.strip():
        raise CardError(f"{path}: field '{field}' is empty (expected {what})")
    return obj


def _check_paper(path: Path, paper, where: str):
    _check(path, paper, where, dict, "a mapping with title, url, year")
    for key, (typ, field, what) in _paper(where).items():
        _check(path, paper.get(key), field, typ, what)
    if not ARXIV.match(paper["url"]):
        raise CardError(
            f"{path}: field '{where}.url' is {paper['url']!r} "
            "(expected an arXiv abstract URL https://arxiv.org/abs/NNNN.NNNNN)"
        )


def _check_shown(path: Path, shown, where: str, folder: Path) -> None:
    what = ("a snippet name in " + _rel(folder) + "/, e.g. sliding_window, optionally with a "
            "section, e.g. encodings:offset (no 'shown' for a fix that is only cited)")
    _check(path, shown, where, str, what)
    m = SHOWN.match(shown)
    if not m:
        raise CardError(f"{path}: field '{where}' is {shown!r} (expected {what})")
    name, section = m.groups()
    snippet = folder / f"{name}.py"
    if not snippet.is_file():
        raise CardError(
            f"{path}: field '{where}' names {shown!r}, but {_rel(snippet)} does not exist "
            f"(expected {what})"
        )
    if section and f"# --8<-- [start:{section}]" not in snippet.read_text(encoding="utf-8"):
        raise CardError(
            f"{path}: field '{where}' names section {section!r}, but {_rel(snippet)} has no "
            f"'# --8<-- [start:{section}]' (expected a section the page can include)"
        )


def _rel(p: Path) -> str:
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def shown(solution: dict) -> tuple[str, str | None] | None:
    """(snippet name, section or None) for a fix shown on its page, None for a cited one."""
    if not solution.get("shown"):
        return None
    name, section = SHOWN.match(solution["shown"]).groups()
    return name, section


def count_shown(cards: list[dict]) -> tuple[int, int]:
    """(fixes shown on their page, all fixes) over the given cards."""
    sols = [s for c in cards for s in c["solutions"]]
    return sum(shown(s) is not None for s in sols), len(sols)


def validate(card, path: Path, snippets_dir: Path = SNIPPETS_DIR) -> dict:
    """Return the card if valid, else raise CardError.

    A solution's `shown` is looked up in snippets_dir/NN_slug/.
    """
    _check(path, card, "<card>", dict, "a YAML mapping")
    c = lambda key, typ, what: _check(path, card.get(key), key, typ, what)  # noqa: E731
    num = c("number", int, "the problem number 1-18")
    if not 1 <= num <= 18:
        raise CardError(f"{path}: field 'number' is {num} (expected 1-18)")
    slug = c("slug", str, "snake_case slug")
    expected_name = f"{num:02d}_{slug}.yaml"
    if path.name != expected_name:
        raise CardError(f"{path}: file name should be {expected_name} (from number and slug)")
    c("title", str, "a short title")
    cat = c("category", str, "one of " + ", ".join(CATEGORIES))
    if cat not in CATEGORIES:
        raise CardError(f"{path}: field 'category' is {cat!r} (expected one of {CATEGORIES})")
    c("summary", str, "a one-line summary")
    visual = c("visual", dict, "a mapping: kind, formula, caption and the kind's fields")
    kind = _check(path, visual.get("kind"), "visual.kind", str, f"one of {VISUAL_KINDS}")
    if kind not in VISUAL_KINDS:
        raise CardError(f"{path}: field 'visual.kind' is {kind!r} (expected one of {VISUAL_KINDS})")
    _check(path, visual.get("formula"), "visual.formula", str, "a matplotlib mathtext formula")
    _check(path, visual.get("caption"), "visual.caption", str, "a short caption under the formula")
    for axis in ("x_label", "y_label"):
        if axis in visual:
            _check(path, visual[axis], f"visual.{axis}", str, "the growth panel's axis label")
    if kind == "growth":
        curves = _check(path, visual.get("curves"), "visual.curves", list,
                        "a list of {label, expr} with expr a Python expression in n")
        for i, cur in enumerate(curves):
            w = f"visual.curves[{i}]"
            _check(path, cur, w, dict, "a mapping with label and expr")
            _check(path, cur.get("label"), f"{w}.label", str, "the curve's legend label")
            expr = _check(path, cur.get("expr"), f"{w}.expr", str, "an expression in n, e.g. n**2")
            if not re.fullmatch(r"[n0-9+\-*/(). ]+", expr.replace("log", "").replace("sqrt", "")):
                raise CardError(f"{path}: field '{w}.expr' is {expr!r} (expected arithmetic in n, log, sqrt)")
    elif kind == "matrix":
        pats = _check(path, visual.get("patterns"), "visual.patterns", list,
                      f"a list of {{label, pattern}} with pattern one of {MATRIX_PATTERNS}")
        for i, p in enumerate(pats):
            w = f"visual.patterns[{i}]"
            _check(path, p, w, dict, "a mapping with label and pattern")
            _check(path, p.get("label"), f"{w}.label", str, "the panel's label")
            pat = _check(path, p.get("pattern"), f"{w}.pattern", str, f"one of {MATRIX_PATTERNS}")
            if pat not in MATRIX_PATTERNS:
                raise CardError(f"{path}: field '{w}.pattern' is {pat!r} (expected one of {MATRIX_PATTERNS})")
    elif kind == "flow":
        steps = _check(path, visual.get("steps"), "visual.steps", list, "a list of short step labels")
        for i, s in enumerate(steps):
            _check(path, s, f"visual.steps[{i}]", str, "a short step label")
    sols = c("solutions", list, "a list of fixes")
    if not sols:
        raise CardError(f"{path}: field 'solutions' is empty (expected at least one fix)")
    for i, s in enumerate(sols):
        w = f"solutions[{i}]"
        _check(path, s, w, dict, "a mapping with name, idea, trade_off, paper")
        _check(path, s.get("name"), f"{w}.name", str, "the fix's name")
        _check(path, s.get("idea"), f"{w}.idea", str, "the idea in one line")
        _check(path, s.get("trade_off"), f"{w}.trade_off", str, "what the fix gives up, one line")
        _check_paper(path, s.get("paper"), f"{w}.paper")
        if "shown" in s:
            _check_shown(path, s["shown"], f"{w}.shown", Path(snippets_dir) / f"{num:02d}_{slug}")
    papers = c("papers", list, "a list of key papers")
    for i, p in enumerate(papers):
        w = f"papers[{i}]"
        _check_paper(path, p, w)
        _check(path, p.get("contribution"), f"{w}.contribution", str, "what the paper contributed")
    return card


def load_card(path: Path, snippets_dir: Path = SNIPPETS_DIR) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CardError(f"{path}: not valid YAML: {exc}") from exc
    return validate(data, path, snippets_dir)


def load_cards(cards_dir: Path = CARDS_DIR, snippets_dir: Path = SNIPPETS_DIR) -> list[dict]:
    """All cards, sorted by number; two cards with the same number are an error."""
    cards = [load_card(p, snippets_dir) for p in sorted(Path(cards_dir).glob("*.yaml"))]
    nums = [c["number"] for c in cards]
    if len(set(nums)) != len(nums):
        raise CardError(f"{cards_dir}: duplicate problem numbers {sorted(nums)}")
    return sorted(cards, key=lambda c: c["number"])


def page_slug(card: dict) -> str:
    """docs/problems/<page_slug>.md, e.g. 01-quadratic-complexity."""
    return f"{card['number']:02d}-{card['slug'].replace('_', '-')}"


def card_stem(card: dict) -> str:
    """problems/<card_stem>.yaml and snippets/problems/<card_stem>/, e.g. 01_quadratic_complexity."""
    return f"{card['number']:02d}_{card['slug']}"
