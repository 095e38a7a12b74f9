"""Shared fixtures: the build runs once per session (cached snippets are reused)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
PY = sys.executable
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


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


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make setup` (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watched:
    """A page with every console error, failed request and foreign request recorded."""

    def __init__(self, browser, base):
        self.ctx = browser.new_context()
        self.page = self.ctx.new_page()
        self.base_host = urlparse(base).netloc
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} {r.status}"))
        self.page.on("request", self._request)

    def _request(self, req):
        u = urlparse(req.url)
        if u.scheme in ("data", "blob", "about"):
            return
        if u.netloc != self.base_host:
            self.foreign.append(req.url)

    def close(self):
        self.ctx.close()
