"""Two cold builds on the same machine agree byte for byte.

Every snippet that measures no time or memory is run a second time, from nothing,
into a separate build folder; its results.json and every SVG it wrote must equal
the first build's exactly (no dates, no random ids, no run-to-run noise). A snippet
that does measure time or memory says so: `# build: exclusive` (timings) or
`# build: measures=time` / `measures=memory`; notebooks record their training time.
"""
from __future__ import annotations

import pytest

import runner
from conftest import ROOT

DETERMINISTIC = [s for s in runner.discover(ROOT)
                 if not s.is_notebook and not {"exclusive", "measures"} & set(s.directives())]


def test_most_snippets_are_held_to_determinism():
    assert len(DETERMINISTIC) >= 40, [s.rel for s in DETERMINISTIC]


@pytest.fixture(scope="module")
def second_build(built, tmp_path_factory):
    build = tmp_path_factory.mktemp("second-build")
    results = runner.run(ROOT, only=[str(s.path) for s in DETERMINISTIC], build=build, keep_going=True,
                         prune=False, log=lambda msg: None)
    failed = [runner.failure_text(r) for r in results if r.status not in ("ran", "cached")]
    assert not failed, "\n\n".join(failed)
    assert all(r.status == "ran" for r in results), "the second build must run everything from nothing"
    return build / "out"


@pytest.mark.parametrize("snippet", DETERMINISTIC, ids=[s.name for s in DETERMINISTIC])
def test_second_cold_build_is_identical(built, second_build, snippet):
    first = ROOT / "build" / "out" / snippet.name
    second = second_build / snippet.name
    files = sorted(f.name for f in first.iterdir() if f.name == "results.json" or f.suffix == ".svg")
    assert files == sorted(f.name for f in second.iterdir() if f.name == "results.json" or f.suffix == ".svg")
    differ = [f for f in files if (first / f).read_bytes() != (second / f).read_bytes()]
    assert not differ, f"{snippet.rel}: {differ} differ between two builds (a date, a random id, or noise?)"
