"""Build the site: run the snippets (cached), draw the infographics, run MkDocs.

    python scripts/build.py                      everything, then mkdocs build --strict
    python scripts/build.py --page docs/problems/01-quadratic-complexity.md
                                                 only that page's snippets (and the site)
    python scripts/build.py --only snippets/problems/01_quadratic_complexity
    python scripts/build.py --no-site            snippets and infographics only
    python scripts/build.py --device cuda        run the snippets on a GPU

Exit status 1 on a failing or hanging snippet (its path and line are printed),
a malformed card, or any MkDocs warning. Previous good outputs stay in place.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cards as cards_mod  # noqa: E402
import layout  # noqa: E402
import runner  # noqa: E402

ROOT = runner.ROOT


def infographics(root: Path = ROOT, log=print) -> int:
    """Draw the cards whose card or drawing code changed; return how many were drawn."""
    cards = cards_mod.load_cards(root / "problems")
    out = layout.build_dir(root) / "infographics"
    out.mkdir(parents=True, exist_ok=True)
    code = b"".join((root / "scripts" / f).read_bytes() for f in ("infographics.py", "cards.py"))
    stale = []
    for card in cards:
        stem = cards_mod.card_stem(card)
        src = (root / "problems" / f"{stem}.yaml").read_bytes()
        digest = hashlib.sha256(code + b"\0" + src).hexdigest()
        stamp = out / f"{stem}.hash"
        if not (out / f"{stem}.svg").is_file() or not stamp.is_file() or stamp.read_text() != digest:
            stale.append((card, stamp, digest))
    wanted = {f"{cards_mod.card_stem(c)}.svg" for c in cards}
    for old in out.glob("*.svg"):
        if old.name not in wanted:
            old.unlink()
    if stale:
        t0 = time.perf_counter()
        import infographics as ig  # matplotlib is imported only when something is drawn

        ig.render_all([c for c, _, _ in stale], out)
        for _, stamp, digest in stale:
            stamp.write_text(digest)
        log(f"infographics: {len(stale)} drawn, {len(cards) - len(stale)} unchanged in {time.perf_counter() - t0:.1f}s")
    else:
        log(f"infographics: {len(cards)} unchanged")
    return len(stale)


def site(root: Path = ROOT, log=print) -> None:
    t0 = time.perf_counter()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TP_SNIPPETS_DONE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=root, env=env, capture_output=True, text=True,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    warnings = [line for line in lines if "WARNING" in line or "ERROR" in line]
    if proc.returncode != 0 or warnings:
        sys.stderr.write("\n".join(lines) + "\n")
        raise SystemExit(f"mkdocs build --strict failed ({len(warnings)} warnings/errors)")
    log(f"site: mkdocs build --strict ok in {time.perf_counter() - t0:.1f}s -> {root / 'site'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", help="snippet files or folders to run")
    ap.add_argument("--page", help="run only the snippets this Markdown page includes")
    ap.add_argument("--device", default="cpu", help="device passed to snippets as --device (default cpu)")
    ap.add_argument("--jobs", type=int, help="snippets in parallel (default: CPU count)")
    ap.add_argument("--timeout", type=float, help=f"seconds per snippet (default {runner.DEFAULT_TIMEOUT:.0f})")
    ap.add_argument("--no-site", action="store_true", help="skip mkdocs build")
    ap.add_argument("--keep-going", action="store_true",
                    help="run every snippet even after a failure, report them all (still exits 1)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    only = args.only
    if args.page:
        only = runner.snippets_of_page(ROOT, Path(args.page))
        if not only:
            print(f"{args.page}: includes no snippet")
    try:
        cards_mod.load_cards(ROOT / "problems")
        results = runner.run(ROOT, only=only, device=args.device, jobs=args.jobs, timeout=args.timeout,
                             keep_going=args.keep_going)
        failed = [r for r in results if r.status in ("failed", "timeout")]
        if failed:
            raise runner.SnippetFailure("\n\n".join(runner.failure_text(r) for r in failed))
        infographics(ROOT)
    except cards_mod.CardError as exc:
        print(f"card error: {exc}", file=sys.stderr)
        return 1
    except runner.SnippetFailure as exc:
        print(f"\n{exc}\n\nbuild stopped; the previous good outputs are kept.", file=sys.stderr)
        return 1
    if not args.no_site:
        site(ROOT)
    print(f"build: done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
