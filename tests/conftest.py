"""Shared fixtures: the build runs once per session (cached snippets are reused)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
PY = sys.executable


@pytest.fixture(scope="session")
def built() -> dict:
    """Run the full build (snippets from cache where valid, infographics, strict MkDocs).

    Returns the build report (build/report.json) plus the build's console output.
    """
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([PY, "scripts/build.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-4000:])
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    report = json.loads((ROOT / "build" / "report.json").read_text())
    report["console"] = proc.stdout + proc.stderr
    return report


def all_snippets() -> list[Path]:
    import runner

    return [s.path for s in runner.discover(ROOT)]


def docs_pages() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.md"))
