"""`mkdocs serve` survives a failing snippet: the page that uses it shows the error,
the rest of the site works, and fixing the file brings the page back (in Chromium)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import PY, ROOT, Watched

SNIPPET = "snippets/problems/14_noise_token_sensitivity/padding.py"
PAGE = "problems/14-noise-token-sensitivity/"
SKIP = shutil.ignore_patterns(".git", ".venv", "site", "node_modules", "__pycache__", "*_out", "portability", "tmp",
                              ".pytest_cache")


def _wait_for(url: str, proc, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, "mkdocs serve exited:\n" + proc.stdout.read()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} not served within {seconds:.0f}s")


@pytest.fixture
def broken_serve(built, tmp_path):
    """A copy of the repository (with the build cache, so only the broken snippet runs)
    served by `mkdocs serve`, with one snippet made to fail."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=SKIP, symlinks=True)
    os.symlink(ROOT / "node_modules", repo / "node_modules")
    path = repo / SNIPPET
    good = path.read_text()
    bad_line = len(good.splitlines()) + 1
    path.write_text(good + "assert 2 + 2 == 5, 'deliberately broken by tests/test_serve.py'\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", SITE_URL=f"http://127.0.0.1:{port}/")
    env.pop("TP_SNIPPETS_DONE", None)
    proc = subprocess.Popen([PY, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}", "--livereload"],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", proc, 300)
        yield {"base": f"http://127.0.0.1:{port}", "path": path, "good": good, "line": bad_line, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_shows_a_failing_snippet_on_its_page_and_recovers(broken_serve, browser):
    base, proc = broken_serve["base"], broken_serve["proc"]
    w = Watched(browser, base)
    w.page.goto(f"{base}/{PAGE}", wait_until="domcontentloaded")
    box = w.page.locator(".admonition.failure").first
    box.wait_for(timeout=10000)
    text = box.inner_text()
    assert f"{SNIPPET}, line {broken_serve['line']}" in text, text
    assert "deliberately broken by tests/test_serve.py" in text and "AssertionError" in text, text
    assert "last good run" in text, "the page keeps the previous outputs and says so"
    assert box.evaluate("e => getComputedStyle(e).borderColor") != "rgba(0, 0, 0, 0)"
    # the rest of the site is served as usual
    w.page.goto(f"{base}/problems/01-quadratic-complexity/", wait_until="domcontentloaded")
    assert w.page.locator(".admonition.failure").count() == 0
    assert w.page.get_by_text("Output (from the build)").count() >= 1
    # fix the file and save it: the server rebuilds and the error is gone
    broken_serve["path"].write_text(broken_serve["good"])
    end = time.monotonic() + 240
    while time.monotonic() < end:
        assert proc.poll() is None, "mkdocs serve exited"
        w.page.goto(f"{base}/{PAGE}", wait_until="domcontentloaded")
        if w.page.locator(".admonition.failure").count() == 0 and w.page.locator("h1").count():
            break
        time.sleep(2)
    else:
        raise AssertionError("the page still shows the error after the snippet was fixed")
    assert w.page.get_by_text("Output (from the build)").count() >= 1
    w.close()
