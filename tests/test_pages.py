"""Pages include real snippets by path, and every snippet is shown by some page."""
from __future__ import annotations

import re

from conftest import ROOT, all_snippets, docs_pages

INCLUDE = re.compile(r'--8<--\s+"([^"]+)"')


def includes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for page in docs_pages():
        for target in INCLUDE.findall(page.read_text(encoding="utf-8")):
            found.setdefault(target.split(":")[0], []).append(page.relative_to(ROOT).as_posix())
    return found


def test_every_include_resolves():
    missing = [f"{pages[0]} includes {t}" for t, pages in includes().items() if not (ROOT / t).is_file()]
    assert not missing, missing


def test_every_snippet_is_included_by_a_page():
    inc = includes()
    scripts = [p for p in all_snippets() if p.suffix == ".py"]
    orphans = [p.relative_to(ROOT).as_posix() for p in scripts if p.relative_to(ROOT).as_posix() not in inc]
    assert not orphans, f"snippets no page includes: {orphans}"


def test_every_notebook_is_linked_from_its_page_and_in_the_nav():
    """A notebook becomes its own page (<folder>-notebook.ipynb); a page links to it and the nav lists it."""
    from hooks import notebook_uri

    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p: p.read_text(encoding="utf-8") for p in docs_pages()}
    for nb in (p for p in all_snippets() if p.suffix == ".ipynb"):
        uri = notebook_uri(nb.relative_to(ROOT / "snippets").with_suffix("").as_posix())
        assert uri in nav, f"{nb.relative_to(ROOT)}: {uri} is not in mkdocs.yml's nav"
        linked = [p for p, text in pages.items()
                  if p.parent == ROOT / "docs" / uri.rsplit("/", 1)[0] and f"]({uri.rsplit('/', 1)[1]})" in text]
        assert linked, f"{nb.relative_to(ROOT)}: no page links to {uri}"


def test_named_sections_exist():
    """An include of `file.py:core` needs the `# --8<-- [start:core]` markers in that file."""
    for page in docs_pages():
        for target in INCLUDE.findall(page.read_text(encoding="utf-8")):
            path, _, section = target.partition(":")
            if section and not re.fullmatch(r"[\d:,-]+", section):  # a named section, not line numbers
                text = (ROOT / path).read_text(encoding="utf-8")
                assert f"[start:{section}]" in text and f"[end:{section}]" in text, (
                    f"{page}: {path} has no section '{section}'"
                )


def test_no_typed_unit_numbers_outside_placeholders():
    """Numbers with units in prose must come from the build ({{ result ... }}) or carry a citation."""
    unit = re.compile(r"\b\d[\d,.]*\s?(ms|MiB|GiB|MB|GB|KB|KiB|TFLOPs?|GFLOP/s|×)(?![\w])")
    hits = []
    for page in docs_pages():
        fence = False
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
                continue
            if fence or "{{" in line or "arxiv" in line.lower() or "[^" in line:
                continue
            if unit.search(line):
                hits.append(f"{page.relative_to(ROOT)}:{i}: {line.strip()[:90]}")
    assert not hits, "hand-typed measurements:\n" + "\n".join(hits)


def test_strict_build_has_no_warnings(built):
    assert "WARNING" not in built["console"], built["console"][-3000:]
    assert (ROOT / "site" / "index.html").is_file()
