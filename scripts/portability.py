"""Run every snippet under several CPU kernel sets, each into its own cache, and
print a table of what failed where.

    python scripts/portability.py                    all kernel sets
    python scripts/portability.py --sets avx2 no-simd
    python scripts/portability.py --only snippets/architectures/vanilla

A CPU without AVX-512, or without any vector unit PyTorch knows, computes other
rounding errors, and a training run follows them. These sets reproduce such a CPU
on this one (the environment variables choose the kernels PyTorch, MKL and oneDNN
dispatch to; `torch.backends.cpu.get_cpu_capability()` reports the result):

    native            this machine's kernels, as `make build` runs them
                      (the build's own cache: build/)
    native-2threads   the same, every snippet with 2 torch threads, one at a time
    avx2              ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
                      ONEDNN_MAX_CPU_ISA=AVX2
    no-simd           ATEN_CPU_CAPABILITY=default

Each set other than native keeps its cache in build/portability/<set>/, so a
second run executes only what changed. Exit status 1 if anything failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import layout  # noqa: E402
import runner  # noqa: E402

# name -> (kernel environment, runner options)
KERNEL_SETS: dict[str, tuple[dict, dict]] = {
    "native": ({}, {}),
    "native-2threads": ({}, {"jobs": 1, "threads": 2}),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, {}),
    "no-simd": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
}


def build_of(name: str, root: Path = layout.ROOT) -> Path:
    base = layout.build_dir(root)
    return base if name == "native" else base / "portability" / name


def run_set(name: str, only=None, root: Path = layout.ROOT, log=print) -> list[runner.Result]:
    kernel, opts = KERNEL_SETS[name]
    env = {k: v for k, v in os.environ.items() if k not in layout.KERNEL_ENV}
    env.update(kernel)
    return runner.run(root, only=only, build=build_of(name, root), env=env, keep_going=True,
                      log=lambda msg: log(f"{name:>15} {msg}"), prune=False, **opts)


def table(by_set: dict[str, dict[str, runner.Result]], capability: dict[str, str]) -> str:
    names = list(by_set)
    snippets = sorted({rel for rows in by_set.values() for rel in rows})
    head = "| Snippet | " + " | ".join(f"{n} ({capability[n]})" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for rel in snippets:
        cells = []
        for n in names:
            r = by_set[n].get(rel)
            if r is None:
                cells.append("")
            elif r.status in ("ran", "cached"):
                cells.append(f"ok {r.seconds:.1f}s")
            else:
                where = f" line {r.line}" if r.line else ""
                cells.append(f"**{r.status.upper()}**{where}: {r.error}".replace("|", "\\|")[:160])
        lines.append(f"| `{rel}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=list(KERNEL_SETS), default=list(KERNEL_SETS))
    ap.add_argument("--only", nargs="+", help="snippet files or folders")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    by_set: dict[str, dict[str, runner.Result]] = {}
    capability: dict[str, str] = {}
    for name in args.sets:
        results = run_set(name, args.only)
        by_set[name] = {r.snippet.rel: r for r in results}
        kernel, _ = KERNEL_SETS[name]
        env = {k: v for k, v in os.environ.items() if k not in layout.KERNEL_ENV} | kernel
        capability[name] = runner.cpu_capability(build_of(name), env)
    text = table(by_set, capability)
    failed = [(n, r) for n, rows in by_set.items() for r in rows.values() if r.status not in ("ran", "cached")]
    out = layout.build_dir() / "portability" / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print("\n" + text + "\n")
    for n, r in failed:
        print(f"[{n}] {runner.failure_text(r)}\n")
    print(f"portability: {len(by_set)} kernel sets, {len(failed)} failures, "
          f"{time.perf_counter() - t0:.0f}s; table in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
