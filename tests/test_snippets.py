"""Every snippet ran in the build and passed its own checks, and keeps the snippet contract."""
from __future__ import annotations

import ast
import json
import sys

import pytest

from conftest import ROOT, all_snippets

SNIPPETS = all_snippets()
IDS = [p.relative_to(ROOT / "snippets").as_posix() for p in SNIPPETS]
ALLOWED_TOP = {"torch", "numpy", "matplotlib"}
NOTEBOOKS = [p for p in SNIPPETS if p.suffix == ".ipynb"]


def source_of(path) -> str:
    """A script's text, or a notebook's code cells joined (magics dropped)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_there_are_snippets():
    assert SNIPPETS, "no snippets found under snippets/"


@pytest.mark.parametrize("path", SNIPPETS, ids=IDS)
def test_snippet_passed_in_build(built, path):
    """The build ran it (now or earlier, same inputs) and its assertions passed."""
    rel = path.relative_to(ROOT).as_posix()
    rows = {r["path"]: r for r in built["snippets"]}
    assert rel in rows, f"{rel} was not run by the build"
    assert rows[rel]["status"] in ("ran", "cached"), rows[rel]


@pytest.mark.parametrize("path", SNIPPETS, ids=IDS)
def test_snippet_is_standalone(path):
    """Imports only the standard library, torch, numpy, matplotlib or its own folder's modules."""
    tree = ast.parse(source_of(path))
    siblings = {p.stem for p in path.parent.glob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            ok = (top in sys.stdlib_module_names or top in ALLOWED_TOP or top in siblings
                  or name.startswith("sklearn.datasets"))  # a dataset that ships inside the package
            assert ok, f"{path}:{node.lineno}: imports {name!r} (allowed: stdlib, torch, numpy, matplotlib, sklearn.datasets)"
            assert top not in ("scripts", "runner", "hooks", "cards", "build"), f"{path}: imports build code"


@pytest.mark.parametrize("path", SNIPPETS, ids=IDS)
def test_snippet_checks_its_claim(path):
    """A snippet that only prints is a demo: it must assert or call torch.testing.assert_close."""
    tree = ast.parse(source_of(path))
    asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    closes = [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "assert_close"
    ]
    assert asserts or closes, f"{path}: no assert / assert_close: a snippet must check its claim"


@pytest.mark.parametrize("path", SNIPPETS, ids=IDS)
def test_snippet_has_main_guard_for_workers(path):
    """Snippets using multiprocessing must guard their entry point (forkserver re-imports them)."""
    text = path.read_text(encoding="utf-8")
    if "multiprocessing" in text:
        assert 'if __name__ == "__main__":' in text, f"{path}: multiprocessing without a __main__ guard"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(ROOT / "snippets").as_posix() for p in NOTEBOOKS])
def test_stored_notebook_has_no_outputs(path):
    """Notebooks are stored stripped (diff-friendly); the build executes them."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"], 1)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path}: cells {dirty} keep outputs; strip them (jupytext/nbstripout)"
