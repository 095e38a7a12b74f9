"""Solutions tables say which fixes each page runs, and the home page's claims about them hold.

A fix in a card is either shown (`shown: snippet` or `shown: snippet:section`, a snippet of
its own page) or cited. These tests need no build: they read the cards, the pages and the
snippets' sources.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import markdown
import pytest
import yaml
from mkdocs.exceptions import PluginError

import cards
from conftest import ROOT, all_snippets

GOOD = ROOT / "problems" / "01_quadratic_complexity.yaml"
CARDS = cards.load_cards(ROOT / "problems")
PAGES = {c["number"]: f"problems/{cards.page_slug(c)}.md" for c in CARDS}


def _card_with(tmp_path, shown: str) -> Path:
    data = yaml.safe_load(GOOD.read_text())
    data["solutions"][0]["shown"] = shown
    path = tmp_path / GOOD.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the card field

def test_a_card_naming_an_existing_snippet_validates(tmp_path):
    card = cards.load_card(_card_with(tmp_path, "sliding_window"))
    assert cards.shown(card["solutions"][0]) == ("sliding_window", None)
    card = cards.load_card(_card_with(tmp_path, "sliding_window:core"))
    assert cards.shown(card["solutions"][0]) == ("sliding_window", "core")


@pytest.mark.parametrize("shown, expect", [
    ("no_such_snippet", "snippets/problems/01_quadratic_complexity/no_such_snippet.py does not exist"),
    ("sliding_window:no_such_section", "has no '# --8<-- [start:no_such_section]'"),
    ("../02_no_positional_awareness/encodings", "expected a snippet name"),
    ("", "is empty"),
])
def test_a_card_naming_a_missing_snippet_fails(tmp_path, shown, expect):
    path = _card_with(tmp_path, shown)
    with pytest.raises(cards.CardError) as info:
        cards.load_card(path)
    msg = str(info.value)
    assert str(path) in msg and "solutions[0].shown" in msg and expect in msg, msg


def test_every_problem_page_renders_its_solutions_table():
    for number, page in PAGES.items():
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert text.count("{{ solutions_table }}") == 1, f"{page}: no {{{{ solutions_table }}}}"


# --------------------------------------------------------------------------- the rendered table

@pytest.fixture()
def hooks(monkeypatch):
    import hooks as h

    monkeypatch.setitem(h._state, "cards", CARDS)
    monkeypatch.setitem(h._state, "docs_dir", str(ROOT / "docs"))
    return h


def _page(uri: str):
    return SimpleNamespace(file=SimpleNamespace(src_uri=uri))


def _table(hooks, uri: str, text: str) -> str:
    hooks._state["page_markdown"] = text
    return hooks._fill(_page(uri), "solutions_table", "", None)


def _headings_with_ids(text: str) -> list[tuple[str, int]]:
    """(id, line number) of every heading, the ids from a full conversion of the page."""
    md = markdown.Markdown(
        extensions=["toc", "attr_list", "admonition", "tables", "md_in_html", "pymdownx.superfences",
                    "pymdownx.arithmatex"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )
    md.convert(text)
    ids = []

    def walk(tokens):
        for t in tokens:
            ids.append(t["id"])
            walk(t["children"])

    walk(md.toc_tokens)
    where, fence = [], None
    for n, line in enumerate(text.split("\n")):
        m = re.match(r"(`{3,}|~{3,})", line.lstrip())
        if m and (fence is None or line.lstrip().startswith(fence)):
            fence = None if fence else m.group(1)
        elif fence is None and re.match(r"#{1,6}\s", line):
            where.append(n)
    assert len(where) == len(ids), "headings found by line and by conversion differ"
    return list(zip(ids, where))


@pytest.mark.parametrize("number", sorted(PAGES))
def test_the_table_links_each_shown_fix_to_the_section_that_includes_it(hooks, number):
    card = next(c for c in CARDS if c["number"] == number)
    uri = PAGES[number]
    text = (ROOT / "docs" / uri).read_text(encoding="utf-8")
    table = _table(hooks, uri, text).split("\n")
    assert table[0].endswith("| On this page |")
    rows = table[2:]
    assert len(rows) == len(card["solutions"])
    headings = _headings_with_ids(text)
    for sol, row in zip(card["solutions"], rows):
        cell = row.rstrip(" |").rsplit("| ", 1)[-1]
        shown = cards.shown(sol)
        if shown is None:
            assert cell == "cited", row
            continue
        name, section = shown
        m = re.fullmatch(r"\[`(\w+)\.py`\]\(#([^)]+)\)", cell)
        assert m and m.group(1) == name, row
        anchor = m.group(2)
        ids = [h[0] for h in headings]
        assert anchor in ids, f"{uri}: #{anchor} is no heading id ({ids})"
        # the linked heading's section (up to the next heading) includes the snippet
        i = ids.index(anchor)
        lines = text.split("\n")
        end = headings[i + 1][1] if i + 1 < len(headings) else len(lines)
        section_text = "\n".join(lines[headings[i][1]:end])
        include = f'--8<-- "snippets/problems/{cards.card_stem(card)}/{name}.py' + (f":{section}" if section else "")
        assert include in section_text, f"{uri}: section #{anchor} does not include {include}"


def test_a_shown_fix_the_page_does_not_include_fails_the_build(hooks):
    text = "# 1. Quadratic complexity\n\n## Fixes\n\n{{ solutions_table }}\n"
    with pytest.raises(PluginError, match="never includes it"):
        _table(hooks, PAGES[1], text)


def test_the_link_follows_duplicate_headings_and_sections(hooks):
    stem = "snippets/problems/02_no_positional_awareness"
    text = "\n".join([
        "# 2. No positional awareness", "", "## Check", "",
        "```python", f'--8<-- "{stem}/encodings.py:encodings"', "```", "",
        "## Check", "", "```python", "# not a heading, inside a fence", f'--8<-- "{stem}/encodings.py:offset"', "```",
    ])
    rows = _table(hooks, PAGES[2], text).split("\n")[2:]
    links = dict(re.findall(r"\*\*(.+?)\*\*.*\| (\[`\w+\.py`\]\(#[^)]+\)|cited) \|$", r)[0] for r in rows)
    assert links["Absolute position encodings"] == "[`encodings.py`](#check)"
    assert links["Rotary position embedding (RoPE)"] == "[`encodings.py`](#check_1)"


# --------------------------------------------------------------------------- the home page

def test_the_count_of_shown_fixes_is_rendered(hooks):
    shown = sum(1 for c in CARDS for s in c["solutions"] if s.get("shown"))
    total = sum(len(c["solutions"]) for c in CARDS)
    assert hooks._fill(_page("index.md"), "fixes_shown", "", None) == f"{shown} of {total}"
    assert 0 < shown < total
    for page in ("index.md", "problems/index.md"):
        assert "{{ fixes_shown }}" in (ROOT / "docs" / page).read_text(encoding="utf-8"), page
    table = hooks._problems_table(_page("index.md"))
    for c in CARDS:
        s = sum(1 for x in c["solutions"] if x.get("shown"))
        assert re.search(rf"^\| {c['number']} \|.*\| {s} of {len(c['solutions'])} \|$", table, re.M), c["number"]


def _imports(path: Path) -> list[str]:
    from test_snippets import source_of

    names = []
    for node in ast.walk(ast.parse(source_of(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


# What the home page's "Run it yourself" says a snippet may import, and the words it uses.
DOCUMENTED = {"torch": "PyTorch", "numpy": "NumPy", "matplotlib": "Matplotlib",
              "sklearn.datasets.load_digits": "`sklearn.datasets.load_digits`"}


def test_the_home_page_lists_what_the_snippets_import():
    import sys

    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    sentence = re.search(r"Copy any snippet into your own project:(.*?)(?:\n\n|\Z)", home, re.S).group(1)
    sentence = " ".join(sentence.split())
    assert "the standard library" in sentence
    for words in DOCUMENTED.values():
        assert words in sentence, f"the home page no longer names {words}"
    used, siblings = set(), set()
    for path in all_snippets():
        local = {p.stem for p in path.parent.glob("*.py")}
        for name in _imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top in local:
                siblings.add((path.relative_to(ROOT).as_posix(), top))
                continue
            key = next((k for k in DOCUMENTED if name == k or name.startswith(k + ".")), None)
            assert key, f"{path.relative_to(ROOT)} imports {name}, which the home page does not list"
            used.add(key)
    assert used == set(DOCUMENTED), f"the home page names {set(DOCUMENTED) - used}, which no snippet imports"
    # "A snippet that imports a file from its own folder needs that file beside it: each
    # architecture's diagram.py and notebook import its model.py."
    assert "imports a file from its own folder" in sentence and siblings, \
        "no snippet imports a file from its own folder any more: update the home page"
    assert "each architecture's `diagram.py` and notebook import its `model.py`" in sentence
    for folder in sorted(p for p in (ROOT / "snippets" / "architectures").iterdir() if (p / "model.py").is_file()):
        for name in ("diagram.py", "notebook.ipynb"):
            rel = (folder / name).relative_to(ROOT).as_posix()
            assert (rel, "model") in siblings, f"{rel} does not import its model.py, as the home page says"
