"""The built site in a real browser (Chromium driven by Playwright), served on 127.0.0.1."""
from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import urljoin

import pytest

from conftest import PY, ROOT, Watched

class Served(str):
    """The server's base URL (a str), with `.site`: the folder it serves."""

    def __new__(cls, url: str, site: Path):
        obj = super().__new__(cls, url)
        obj.site = site
        return obj


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(built, tmp_path_factory):
    """The site, built for this server's address and served from it.

    Material's instant navigation only intercepts links under `site_url`, as on the
    hosted site; so the pages are rendered once more (snippets and figures reused)
    with site_url set to this server.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, SITE_URL=f"http://127.0.0.1:{port}/", TP_SNIPPETS_DONE="1", NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([PY, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Served(f"http://127.0.0.1:{port}", site)
    httpd.shutdown()


def html_pages(site: Path) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    return [p.removesuffix("index.html") for p in pages if p != "404.html"]


def _load_all_images(page):
    """Scroll every image into view (lazy ones load then) and report those that fail."""
    return page.evaluate(
        """async () => {
            const bad = [];
            for (const img of Array.from(document.images)) {
                img.scrollIntoView();
                if (!img.complete) {
                    await new Promise(r => { img.addEventListener('load', r, {once: true});
                                             img.addEventListener('error', r, {once: true});
                                             setTimeout(r, 5000); });
                }
                if (!img.complete || img.naturalWidth === 0) bad.push(img.currentSrc || img.src);
            }
            return bad;
        }"""
    )


def _math_state(page):
    return page.evaluate(
        """() => ({
            katex: document.querySelectorAll('.arithmatex .katex').length,
            pending: Array.from(document.querySelectorAll('.arithmatex')).filter(e => !e.dataset.rendered).length,
            raw: /\\\\\\(|\\\\\\[/.test(document.querySelector('article').innerText),
            errors: document.querySelectorAll('.katex-error').length,
        })"""
    )


def test_every_page_loads_cleanly(server, browser):
    pages = html_pages(server.site)
    assert len(pages) >= 4, pages
    problems = []
    for rel in pages:
        w = Watched(browser, server)
        w.page.goto(f"{server}/{rel}", wait_until="networkidle")
        bad_images = _load_all_images(w.page)
        w.page.wait_for_load_state("networkidle")
        math = _math_state(w.page)
        for kind, items in (("console error", w.errors), ("failed request", w.failed),
                            ("request to another host", w.foreign), ("broken image", bad_images)):
            problems += [f"{rel}: {kind}: {x}" for x in items]
        if math["pending"] or math["raw"] or math["errors"]:
            problems.append(f"{rel}: math not rendered: {math}")
        w.close()
    assert not problems, "\n".join(problems)


def test_problem_page_has_rendered_math_figures_and_output(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/problems/01-quadratic-complexity/", wait_until="networkidle")
    assert _math_state(w.page)["katex"] >= 3
    assert w.page.locator("img.infographic").count() == 1
    assert w.page.locator("img[src*='generated/problems/01_quadratic_complexity']").count() >= 2
    assert w.page.get_by_text("Output (from the build)").count() >= 2
    # Material adds copy buttons to code blocks as they scroll into view
    w.page.locator("pre").first.scroll_into_view_if_needed()
    w.page.locator("button[data-md-type=copy]").first.wait_for(state="attached", timeout=10000)
    w.close()


def test_search_finds_flash_on_problem_1(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/", wait_until="networkidle")
    w.page.locator("label.md-search__icon, .md-search__input").first.click()
    w.page.locator("input.md-search__input").press_sequentially("flash", delay=50)
    item = w.page.locator(".md-search-result__item").filter(has_text="Quadratic complexity")
    item.first.wait_for(timeout=15000)
    assert not w.errors and not w.foreign, (w.errors, w.foreign)
    w.close()


def test_instant_navigation_rerenders_math(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/", wait_until="networkidle")
    w.page.evaluate("window.__sameDocument = true")
    w.page.locator(".md-content a[href*='01-quadratic-complexity']").first.click()
    w.page.wait_for_url("**/01-quadratic-complexity/**")
    w.page.wait_for_function("document.querySelectorAll('.arithmatex .katex').length > 0", timeout=10000)
    # instant navigation swaps the page without reloading the document
    assert w.page.evaluate("window.__sameDocument === true"), "navigation reloaded the page (not instant)"
    state = _math_state(w.page)
    assert state["pending"] == 0 and not state["raw"], state
    assert not w.errors and not w.foreign and not w.failed, (w.errors, w.foreign, w.failed)
    w.close()


def test_dark_mode_toggle(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/", wait_until="networkidle")
    before = w.page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    w.page.locator("form[data-md-component='palette'] label:visible").first.click()
    after = w.page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    assert {before, after} == {"default", "slate"}, (before, after)
    w.close()


def test_custom_404(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/404.html", wait_until="networkidle")
    assert w.page.get_by_role("heading", name="Page not found").count() == 1
    w.close()


def test_notebook_page_has_outputs_links_and_shared_styles(built, server, browser):
    w = Watched(browser, server)
    w.page.goto(f"{server}/architectures/gpt-notebook/", wait_until="networkidle")
    assert w.page.locator(".jupyter-wrapper img").count() >= 2, "the executed notebook's figures"
    download = w.page.locator("a", has_text="Download the notebook").get_attribute("href")
    resp = w.page.request.get(urljoin(w.page.url, download))
    assert resp.ok and b'"cells"' in resp.body(), download
    colab = w.page.locator("a", has_text="Open in Colab").get_attribute("href")
    assert colab.endswith("/blob/main/snippets/architectures/gpt/notebook.ipynb"), colab
    edit = w.page.locator("a.md-content__button[href*='edit']").first.get_attribute("href")
    assert edit.endswith("/edit/main/snippets/architectures/gpt/notebook.ipynb"), edit
    # the converter's Jupyter CSS is one shared file, not inlined into the page
    assert w.page.locator("link[href*='assets/notebook-']").count() >= 1
    assert max(len(s) for s in w.page.eval_on_selector_all("style", "els => els.map(e => e.textContent)")) < 8192
    assert not w.errors and not w.failed and not w.foreign, (w.errors, w.failed, w.foreign)
    w.close()


@pytest.mark.parametrize("path", ["", "problems/01-quadratic-complexity/", "architectures/", "architectures/gpt/",
                                  "architectures/gpt-notebook/"])
def test_no_serious_accessibility_violations(built, server, browser, path):
    from axe_playwright_python.sync_playwright import Axe

    w = Watched(browser, server)
    w.page.goto(f"{server}/{path}", wait_until="networkidle")
    results = Axe().run(w.page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, "\n".join(bad)
    w.close()
