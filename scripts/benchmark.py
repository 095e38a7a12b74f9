"""Measure the build: cold, no-change rebuild, one-snippet-change rebuild, and
the per-snippet overhead of the runner against a fresh `python -c "import torch"`.

    python scripts/benchmark.py                 print a Markdown report
    python scripts/benchmark.py --write-readme  also put it in README.md (Performance)

Works on a temporary copy of the working tree, so the real build/ cache is untouched.
A benchmark, not a test: it reports, it does not assert budgets.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # noqa: E402

ROOT = runner.ROOT
PY = sys.executable
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "site", "node_modules", "__pycache__", "*_out")


def timed(cmd, cwd) -> tuple[float, str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return dt, proc.stdout + proc.stderr


def ran_count(out: str) -> str:
    line = next((x for x in out.splitlines() if x.startswith("snippets:")), "")
    m = re.search(r"(\d+) ran", line)
    return m.group(1) if m else "?"


def copy_tree(dst: Path) -> Path:
    shutil.copytree(ROOT, dst, ignore=IGNORE)
    os.symlink(ROOT / "node_modules", dst / "node_modules")
    return dst


def overhead(tmp: Path, n: int = 24) -> dict:
    """Per-snippet cost of the runner for empty snippets vs fresh interpreters."""
    fresh = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", "import torch, numpy, matplotlib.pyplot"], check=True)
        fresh.append(time.perf_counter() - t0)
    repo = tmp / "overhead"
    shutil.copytree(ROOT / "scripts", repo / "scripts", ignore=IGNORE)
    (repo / "snippets" / "empty").mkdir(parents=True)
    for i in range(n):
        (repo / "snippets" / "empty" / f"e{i:02d}.py").write_text(f"import torch\nprint({i})\n")
    t0 = time.perf_counter()
    results = runner.run(repo, log=lambda *_: None)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    z = runner.Zygote(repo)
    start = time.perf_counter() - t0
    z.close()
    per = [r.seconds for r in results]
    return {
        "fresh_import_s": statistics.median(fresh),
        "zygote_start_s": start,
        "per_snippet_s": statistics.median(per),
        "amortised_s": (total - start) / n,
        "n": n,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tp-bench-") as t:
        tmp = Path(t)
        repo = copy_tree(tmp / "repo")
        cold, out = timed([PY, "scripts/build.py"], repo)
        report = json.loads((repo / "build" / "report.json").read_text())
        work = sum(s["seconds"] for s in report["snippets"])
        slowest = max(report["snippets"], key=lambda s: s["seconds"])
        n_snip = len(report["snippets"])
        nochange, out2 = timed([PY, "scripts/build.py"], repo)
        smallest = min(report["snippets"], key=lambda s: s["seconds"])
        target = repo / smallest["path"]
        target.write_text(target.read_text() + "\n# benchmark edit\n")
        onechange, out3 = timed([PY, "scripts/build.py"], repo)
        nosite, _ = timed([PY, "scripts/build.py", "--no-site"], repo)
        ov = overhead(tmp)
    m = runner.machine()
    env = runner.environment("cpu")
    lines = [
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {m['cpu']}, {m['cores']} cores, "
        f"PyTorch {env['torch']}, Python {platform.python_version()}.",
        "",
        "| What | Time |",
        "|---|---|",
        f"| Cold full build ({n_snip} snippets, infographics, `mkdocs build --strict`) | {cold:.1f} s |",
        f"| &nbsp;&nbsp;snippets' own run time, summed (two run at once, so the sum exceeds the wall time) | {work:.1f} s |",
        f"| &nbsp;&nbsp;slowest snippet: `{slowest['path']}` | {slowest['seconds']:.1f} s |",
        f"| No-change rebuild (snippets executed: {ran_count(out2)}) | {nochange:.1f} s |",
        f"| &nbsp;&nbsp;of which outside MkDocs (`build.py --no-site`) | {nosite:.2f} s |",
        f"| One snippet edited (`{smallest['path']}`; snippets executed: {ran_count(out3)}) | {onechange:.1f} s |",
        f"| Fresh interpreter + `import torch, numpy, matplotlib` (median of 3) | {ov['fresh_import_s']:.2f} s |",
        f"| Runner start (one pre-warmed process per build) | {ov['zygote_start_s']:.2f} s |",
        f"| Per-snippet overhead in the runner (fork to exit, empty snippet, median of {ov['n']}) | {ov['per_snippet_s'] * 1000:.0f} ms |",
        f"| Per-snippet wall time, {ov['n']} empty snippets over {m['cores']} cores | {ov['amortised_s'] * 1000:.0f} ms |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        readme = ROOT / "README.md"
        body = readme.read_text()
        new = re.sub(r"(<!-- bench:start -->\n).*?(\n<!-- bench:end -->)",
                     lambda mm: mm.group(1) + text + mm.group(2), body, flags=re.S)
        readme.write_text(new)
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
