"""MkDocs hooks: connect the snippet runner's outputs and the cards to the pages.

Placeholders a page may use (in prose, not in code blocks):

    {{ result NAME.key.path }}         a value from NAME's results.json
    {{ result NAME.key.path | .2f }}   ... formatted with a format spec
    {{ output NAME }}                  NAME's printed output as a text block
    {{ figure NAME/file.svg | alt }}   an image the snippet wrote
    {{ machine NAME }}                 the CPU, cores and torch that ran NAME
    {{ infographic }}                  this problem page's card, drawn
    {{ solutions_table }}              this problem page's fixes, from its card; a fix
                                       marked `shown:` links to the section of this
                                       page that includes its snippet, the rest say
                                       "cited" (scripts/cards.py)
    {{ papers }}                       this problem page's papers, from its card
    {{ problems_table }}               all problems grouped by category
    {{ fixes_shown }}                  "S of T": fixes shown on their page, of all fixes

NAME is a snippet path without .py, relative to the page's own snippet folder
(docs/problems/01-quadratic-complexity.md -> snippets/problems/01_quadratic_complexity/)
or, if it contains a '/', relative to snippets/. A placeholder that cannot be
filled fails the build.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build as build_mod  # noqa: E402  (imported now: MkDocs restores sys.path after loading hooks)
import cards as cards_mod  # noqa: E402
import layout  # noqa: E402
import runner  # noqa: E402

ROOT = runner.ROOT
BUILD = layout.build_dir(ROOT)
OUT = BUILD / "out"
log = logging.getLogger("mkdocs.hooks.transformer_problems")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*([^}|]*?)\s*(?:\|\s*([^}]*?)\s*)?\}\}")
FIGURE_EXT = {".svg", ".png"}
KATEX = ROOT / "node_modules" / "katex" / "dist"
NOTEBOOK_PAGES = BUILD / "notebook-pages"

# notebooks: page uri -> snippet name; failures: snippet name -> Result (under `mkdocs serve`)
_state: dict = {"cards": [], "notebooks": {}, "failures": {}}


def on_startup(command, dirty):
    # MkDocs loads this file afresh for every rebuild under `serve` but calls on_startup
    # once: the command is kept where the next copy of this module finds it.
    os.environ[layout.COMMAND_ENV] = command


def _serving() -> bool:
    return os.environ.get(layout.COMMAND_ENV) == "serve"


def on_config(config):
    try:
        _state["cards"] = cards_mod.load_cards(ROOT / "problems")
        _state["docs_dir"] = config["docs_dir"]
        _state["mdx_configs"] = config.get("mdx_configs") or {}
    except cards_mod.CardError as exc:
        raise PluginError(f"card error: {exc}") from exc
    if not (KATEX / "katex.min.js").is_file():
        raise PluginError(f"KaTeX is not installed ({KATEX} missing): run `make setup` (npm ci)")
    return config


def on_pre_build(config):
    """Run stale snippets and redraw stale infographics (a no-op when all is cached).

    `mkdocs build` stops on a failing snippet. `mkdocs serve` keeps serving: it runs
    every other snippet, and the pages that use a failed one show its error (and the
    last good outputs, if any) until the file is fixed and saved.
    """
    if os.environ.get("TP_SNIPPETS_DONE") == "1":
        return
    try:
        results = runner.run(ROOT, log=log.info, keep_going=_serving())
        build_mod.infographics(ROOT, log=log.info)
    except (runner.SnippetFailure, cards_mod.CardError) as exc:
        raise PluginError(f"{exc}\nThe previous good outputs are kept.") from exc
    _state["failures"] = {r.snippet.name: r for r in results if r.status in ("failed", "timeout")}
    for r in _state["failures"].values():
        log.error(runner.failure_text(r))


def on_serve(server, config, builder):
    for sub in ("snippets", "problems"):
        server.watch(str(ROOT / sub))
    return server


def notebook_uri(name: str) -> str:
    """snippets/architectures/transformer_xl/notebook.ipynb -> architectures/transformer-xl-notebook.ipynb."""
    folder, _, stem = name.rpartition("/")
    return f"{folder.replace('_', '-')}-{stem}.ipynb"


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config):
    """Add generated figures, infographics, executed notebooks and KaTeX to the site."""

    def add(src_uri: str, abs_path: Path) -> None:
        files.append(File.generated(config, src_uri, abs_src_path=str(abs_path)))

    _state["notebooks"] = {}

    if OUT.is_dir():
        for link in sorted(OUT.rglob("*")):
            if not link.is_symlink():
                continue
            name = link.relative_to(OUT).as_posix()
            for f in sorted(link.resolve().iterdir()):
                if f.suffix in FIGURE_EXT:
                    add(f"generated/{name}/{f.name}", f)
            if (link / "notebook.ipynb").is_file():
                # The executed notebook becomes a page (mkdocs-jupyter wraps only plain
                # Files, so it is copied under a source folder of its own); the stored
                # notebook, without outputs, becomes a download.
                uri = notebook_uri(name)
                _state["notebooks"][uri] = name
                page_src = NOTEBOOK_PAGES / uri
                page_src.parent.mkdir(parents=True, exist_ok=True)
                data = (link / "notebook.ipynb").read_bytes()
                if not page_src.is_file() or page_src.read_bytes() != data:
                    page_src.write_bytes(data)
                files.append(File(uri, src_dir=str(NOTEBOOK_PAGES), dest_dir=config["site_dir"],
                                  use_directory_urls=config["use_directory_urls"]))
                add(f"downloads/{uri.replace('/', '-')}", ROOT / "snippets" / f"{name}.ipynb")
    ig = BUILD / "infographics"
    if ig.is_dir():
        for f in sorted(ig.glob("*.svg")):
            add(f"generated/infographics/{f.name}", f)
    for rel in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js"):
        add(f"assets/katex/{rel}", KATEX / rel)
    for font in sorted((KATEX / "fonts").glob("*.woff2")):
        add(f"assets/katex/fonts/{font.name}", font)
    return files


def _page_dir(page) -> str:
    """docs/problems/01-quadratic-complexity.md -> problems/01_quadratic_complexity."""
    src = Path(page.file.src_uri)
    return (src.parent / src.stem.replace("-", "_")).as_posix()


def _page_card(page):
    stem = Path(page.file.src_uri).stem
    for card in _state["cards"]:
        if cards_mod.page_slug(card) == stem:
            return card
    return None


def _full_name(page, name: str) -> str:
    return name if "/" in name else f"{_page_dir(page)}/{name}"


class Unfilled(PluginError):
    """A placeholder whose snippet has no output (under `mkdocs serve`: shown inline)."""


def _entry(page, name: str, what: str) -> Path:
    full = _full_name(page, name)
    link = OUT / full
    if not link.exists():
        raise Unfilled(
            f"{page.file.src_uri}: {what} needs snippets/{full}.py to have run "
            f"(no output at build/out/{full}); run `python scripts/build.py`"
        )
    return link


def _lookup(data, dotted: str, where: str):
    cur = data
    for part in dotted.split("."):
        if isinstance(cur, list) and part.lstrip("-").isdigit():
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise PluginError(f"{where}: no value '{dotted}' (missing '{part}')")
    return cur


def _rel(page, uri: str) -> str:
    return posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".")


def _paper_link(p: dict) -> str:
    arxiv = p["url"].rsplit("/", 1)[-1]
    return f"[{p['title']}]({p['url']}) ({p['year']}, arXiv:{arxiv})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fill(page, kind: str, arg: str, opt: str | None) -> str:
    where = f"{page.file.src_uri}: {{{{ {kind} {arg} }}}}"
    if kind == "result":
        name, _, key = arg.partition(".")
        if not key:
            raise PluginError(f"{where}: expected NAME.key")
        link = _entry(page, name, where)
        results = link / "results.json"
        if not results.is_file():
            raise PluginError(f"{where}: snippet wrote no results.json")
        value = _lookup(json.loads(results.read_text()), key, where)
        if isinstance(value, (dict, list)):
            raise PluginError(f"{where}: '{key}' is a {type(value).__name__}, not a single value")
        try:
            return format(value, opt) if opt else str(value)
        except (ValueError, TypeError) as exc:
            raise PluginError(f"{where}: cannot format {value!r} with '{opt}': {exc}") from exc
    if kind == "output":
        link = _entry(page, arg, where)
        text = (link / "_stdout.txt").read_text().rstrip()
        if not text:
            raise PluginError(f"{where}: the snippet printed nothing")
        fence = "````" if "```" in text else "```"
        return f'{fence}text title="Output (from the build)"\n{text}\n{fence}'
    if kind == "figure":
        name, _, fname = arg.rpartition("/")
        link = _entry(page, name, where)
        if not (link / fname).is_file():
            raise PluginError(f"{where}: the snippet wrote no {fname}")
        full = link.relative_to(OUT).as_posix()
        alt = opt or fname
        return f"![{alt}]({_rel(page, f'generated/{full}/{fname}')}){{ loading=lazy }}"
    if kind == "machine":
        link = _entry(page, arg, where)
        meta = json.loads((link / "_meta.json").read_text())
        m, env = meta["machine"], meta["env"]
        n = meta.get("torch_threads") or "?"
        return (
            f"{m['cpu']}, {m['cores']} cores ({n} torch thread{'' if n == 1 else 's'}), "
            f"CPU capability {env.get('cpu_capability', '?')}, "
            f"PyTorch {env['torch']}, Python {env['python']}, device {env['device']}"
        )
    card = _page_card(page)
    if kind in ("infographic", "solutions_table", "papers") and card is None:
        raise PluginError(f"{where}: this page has no problem card (expected problems/<NN_slug>.yaml)")
    if kind == "infographic":
        stem = cards_mod.card_stem(card)
        if not (BUILD / "infographics" / f"{stem}.svg").is_file():
            raise PluginError(f"{where}: infographic not drawn; run `python scripts/build.py`")
        return (
            f"![Infographic: {card['title']}]"
            f"({_rel(page, f'generated/infographics/{stem}.svg')}){{ .infographic }}"
        )
    if kind == "solutions_table":
        rows = ["| Fix | Idea | Trade-off | Paper | On this page |", "|---|---|---|---|---|"]
        for s in card["solutions"]:
            shown = cards_mod.shown(s)
            if shown:
                name, section = shown
                here = f"[`{name}.py`](#{_shown_anchor(page, card, name, section, where)})"
            else:
                here = "cited"
            rows.append(
                f"| **{_cell(s['name'])}** | {_cell(s['idea'])} | {_cell(s['trade_off'])} | "
                f"[{_cell(s['paper']['title'])}]({s['paper']['url']}) ({s['paper']['year']}) | {here} |"
            )
        return "\n".join(rows)
    if kind == "fixes_shown":
        shown, total = cards_mod.count_shown(_state["cards"])
        return f"{shown} of {total}"
    if kind == "papers":
        return "\n".join(f"- {_paper_link(p)}: {p['contribution']}" for p in card["papers"])
    if kind == "problems_table":
        return _problems_table(page)
    raise PluginError(f"{where}: unknown placeholder '{kind}'")


_INCLUDE = re.compile(r'--8<--\s+"snippets/([^":]+)\.py(?::([\w-]+))?"')
_HEADING = re.compile(r"#{1,6}\s")
_FENCE = re.compile(r"(`{3,}|~{3,})")


def _heading_ids(headings: list[str]) -> list[str]:
    """The ids MkDocs gives these heading lines (in page order), from the same toc extension."""
    import markdown

    cfg = _state.get("mdx_configs") or {}
    toc = {k: v for k, v in cfg.get("toc", {}).items() if k in ("slugify", "separator")}
    md = markdown.Markdown(
        extensions=["toc", "attr_list", "pymdownx.arithmatex"],
        extension_configs={"toc": toc, "pymdownx.arithmatex": cfg.get("pymdownx.arithmatex", {"generic": True})},
    )
    md.convert("\n\n".join(headings))
    ids: list[str] = []

    def walk(tokens):
        for t in tokens:
            ids.append(t["id"])
            walk(t["children"])

    walk(md.toc_tokens)
    return ids


def _shown_anchor(page, card, name: str, section: str | None, where: str) -> str:
    """The id of the heading above the first place this page includes the snippet of a
    fix marked `shown:` in its card; fails if the page does not include it."""
    full = f"problems/{cards_mod.card_stem(card)}/{name}"
    headings, hit, fence = [], None, None
    for line in _state.get("page_markdown", "").split("\n"):
        stripped = line.lstrip()
        m = _FENCE.match(stripped)
        if m and (fence is None or stripped.startswith(fence)):
            fence = None if fence else m.group(1)
            continue
        if fence is None and _HEADING.match(line):
            headings.append(line)
            continue
        inc = _INCLUDE.search(line)
        if hit is None and inc and inc.group(1) == full and section in (None, inc.group(2)):
            hit = len(headings) - 1
    shown = name + (f":{section}" if section else "")
    if hit is None or hit < 0:
        raise PluginError(
            f"{where}: the card marks a fix as shown by {shown!r}, but this page "
            + ("includes it above its first heading" if hit is not None else
               f'never includes it (--8<-- "snippets/{full}.py' + (f":{section}" if section else "") + '")')
            + "; include the snippet under a heading, or remove `shown:` from the card"
        )
    ids = _heading_ids(headings)
    if len(ids) != len(headings):
        raise PluginError(f"{where}: found {len(headings)} headings but {len(ids)} ids")
    return ids[hit]


def _problems_table(page) -> str:
    docs = Path(_state["docs_dir"])
    parts = []
    for cat in cards_mod.CATEGORIES:
        rows = [c for c in _state["cards"] if c["category"] == cat]
        if not rows:
            continue
        parts += [f"### {cat}", "", "| # | Problem | In one line | Fixes shown |", "|---|---|---|---|"]
        for c in rows:
            slug = cards_mod.page_slug(c)
            title = _cell(c["title"])
            if (docs / "problems" / f"{slug}.md").is_file():
                title = f"[{title}]({_rel(page, f'problems/{slug}.md')})"
            else:
                title += " *(page coming)*"
            shown, total = cards_mod.count_shown([c])
            parts.append(f"| {c['number']} | {title} | {_cell(c['summary'])} | {shown} of {total} |")
        parts.append("")
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    out, fence, used = [], None, set()
    _state["page_markdown"] = markdown  # {{ solutions_table }} links to where snippets are included
    serving = _serving()

    def fill(mm: re.Match) -> str:
        kind, arg = mm.group(1), mm.group(2)
        if kind in ("result", "output", "figure", "machine"):
            used.add(_full_name(page, arg.partition(".")[0] if kind == "result" else arg.rpartition("/")[0]
                                if kind == "figure" else arg))
        try:
            return _fill(page, kind, arg, mm.group(3))
        except Unfilled:
            if not serving:
                raise
            return '<span class="tp-unfilled">(not available: the snippet failed, see the error above)</span>'

    for line in markdown.split("\n"):
        stripped = line.lstrip()
        m = re.match(r"(`{3,}|~{3,})", stripped)
        if m and (fence is None or stripped.startswith(fence)):
            fence = None if fence else m.group(1)
            out.append(line)
            continue
        if fence is None and "{{" in line:
            line = PLACEHOLDER.sub(fill, line)
        out.append(line)
    used.update(Path(p).with_suffix("").relative_to("snippets").as_posix()
                for p in re.findall(r'--8<--\s+"(snippets/[^":]+\.py)', markdown))
    return _error_boxes(used) + "\n".join(out)


def _error_boxes(names: set[str]) -> str:
    """Under `mkdocs serve`: one error box per failed snippet this page uses."""
    boxes = []
    for name in sorted(names & set(_state["failures"])):
        r = _state["failures"][name]
        where = r.snippet.rel + (f", line {r.line}" if r.line else "")
        detail = (r.detail or r.error or "").rstrip()
        kept = " The values below are from its last good run." if (OUT / name).exists() else ""
        boxes.append(
            f'!!! failure "{"Timed out" if r.status == "timeout" else "Failed"}: {where}"\n\n'
            f"    `{r.error}`{kept} Fix the file and save it: this page rebuilds.\n\n"
            "    ```text\n" + "\n".join("    " + x for x in detail.splitlines()) + "\n    ```\n\n"
        )
    return "".join(boxes)


_CDN_BLOCKS = [
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S),
    # any inline script that would import from another host (nbconvert's mermaid loader)
    re.compile(r"<script[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>", re.S),
    re.compile(r"<script[^>]*src=\"https?://[^\"]*\"[^>]*>\s*</script>"),
]


def on_page_context(context, page, config, nav):
    """A notebook page's source is the stored notebook under snippets/, not a file in docs/."""
    name = _state["notebooks"].get(page.file.src_uri)
    if name:
        page.edit_url = f"{config['repo_url']}/edit/main/snippets/{name}.ipynb"
    return context


def on_post_page(output, page, config):
    """Notebook pages: drop the converter's CDN scripts (the site renders math with its
    own KaTeX), share its CSS, and add download / Colab / source links."""
    uri = page.file.src_uri
    name = _state["notebooks"].get(uri)
    if name is None:
        return output
    for pat in _CDN_BLOCKS:
        output = pat.sub("", output)
    here = page.url.rstrip("/") if page.url.endswith("/") else posixpath.dirname(page.url)
    output = _share_styles(output, here, config)
    # Code cells scroll sideways: make each focusable so keyboard users can scroll it.
    output = output.replace('<div class="highlight-ipynb', '<div tabindex="0" class="highlight-ipynb')
    download = posixpath.relpath(f"downloads/{uri.replace('/', '-')}", here or ".")
    blob = f"{config['repo_url'].split('github.com/', 1)[1]}/blob/main/snippets/{name}.ipynb"  # owner/repo/blob/...
    links = (
        '<p class="notebook-links">'
        f'<a href="{download}" download>Download the notebook</a> · '
        f'<a href="https://colab.research.google.com/github/{blob}">Open in Colab</a> · '
        f'<a href="https://github.com/{blob}">Source on GitHub</a>'
        " · executed by the build; the outputs below are what it printed</p>"
    )
    return output.replace('<div class="jupyter-wrapper">', links + '<div class="jupyter-wrapper">', 1)


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def _share_styles(output: str, here: str, config) -> str:
    """The converter inlines the same half-megabyte of Jupyter CSS into every notebook page.
    Move each large style block into one file under assets/ (named by its hash, so every
    notebook page shares it and the browser caches it), in place, so the cascade is unchanged."""
    def move(m: re.Match) -> str:
        css = m.group(1)
        if len(css) < 8192:
            return m.group(0)
        name = f"assets/notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
        path = Path(config["site_dir"]) / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(css, encoding="utf-8")
        return f'<link rel="stylesheet" href="{posixpath.relpath(name, here or ".")}">'

    return _STYLE.sub(move, output)
