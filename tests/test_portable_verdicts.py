"""The machine-dependent sentences stay true on another CPU.

The snippets that write verdicts ("faster", "has bf16 instructions", "waits on memory")
are run again under ATEN_CPU_CAPABILITY=default (no vector kernels: a different CPU as
far as PyTorch is concerned) into the no-SIMD cache that `make portability` uses; their
pages are rendered from those results, and every verdict is checked against the numbers
beside it (tests/test_verdicts.py's checks) and found in the rendered page.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

import cards as cards_mod
import portability
from conftest import ROOT
from test_verdicts import CHECKS, check_out_dir


def _page_of(name: str) -> str:
    """problems/18_realtime_deployment/fixes -> problems/18-realtime-deployment.md"""
    folder, _, _ = name.rpartition("/")
    section, _, slug = folder.partition("/")
    return f"{section}/{slug.replace('_', '-')}.md"


@pytest.fixture(scope="module")
def no_simd_out(built):
    folders = sorted({f"snippets/{n.rpartition('/')[0]}" for n in CHECKS})  # every snippet of those pages
    results = portability.run_set("no-simd", only=folders, log=lambda msg: None)
    failed = [f"{r.snippet.rel}: {r.error}" for r in results if r.status not in ("ran", "cached")]
    assert not failed, failed
    out = portability.build_of("no-simd") / "out"
    meta = (out / next(iter(CHECKS)) / "_meta.json").read_text()
    assert '"cpu_capability": "DEFAULT"' in meta, "the results must come from the no-SIMD kernels"
    return out


def test_verdicts_agree_with_their_numbers_without_simd(no_simd_out):
    outcome = check_out_dir(no_simd_out)
    bad = {k: v for k, v in outcome.items() if v != "ok"}
    assert not bad, bad


@pytest.mark.parametrize("page", sorted({_page_of(n) for n in CHECKS}))
def test_pages_render_the_no_simd_verdicts(no_simd_out, monkeypatch, page):
    import json

    import hooks

    monkeypatch.setattr(hooks, "OUT", no_simd_out)
    monkeypatch.setitem(hooks._state, "cards", cards_mod.load_cards(ROOT / "problems"))
    src = (ROOT / "docs" / page).read_text()
    rendered = hooks.on_page_markdown(src, SimpleNamespace(file=SimpleNamespace(src_uri=page)), {}, None)
    assert "{{" not in rendered
    assert "CPU capability DEFAULT" in rendered, "the machine line names the kernels that measured the page"
    folder = page.removesuffix(".md").replace("-", "_")
    used = re.findall(r"\{\{\s*result\s+(\w+)\.verdicts\.([\w.]+)", src)
    assert used, f"{page} renders no verdict"
    for snippet, key in used:
        value = json.loads((no_simd_out / folder / snippet / "results.json").read_text())["verdicts"]
        for part in key.split("."):
            value = value[part]
        assert str(value) in rendered, f"{page}: verdict {snippet}.{key} not rendered"
