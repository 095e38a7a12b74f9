"""Run the timing snippets (`# build: exclusive`) many times, quiet and under load,
and report the range each of their checks took.

    python scripts/timing_ranges.py                  10 quiet + 10 loaded runs each
    python scripts/timing_ranges.py --runs 3 --only snippets/problems/04_slow_autoregressive_decoding

A timing threshold must hold on a busy laptop and a shared CI runner, so it is set
from the observed range, not from one good run. Every `assert` in a snippet is
rewritten (in memory only) to record the two sides of its comparison before it
checks them; the table shows, per check, the smallest and largest value of each
side over the quiet runs and over the loaded runs (LOAD busy loops, default 2),
and how many runs failed it. Checks whose sides never changed are left out.

Each run is a child forked from this process (torch imported once), with the torch
threads and seeds the build gives an exclusive snippet. A report, not a test.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import layout  # noqa: E402
import runner  # noqa: E402

OPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


class _Record(ast.NodeTransformer):
    """`assert a OP b, msg`  ->  `__tp_cmp__(line, src, a, "OP", b, lambda: msg)`."""

    def __init__(self, source: str):
        self.source = source

    def visit_Assert(self, node: ast.Assert):
        msg = ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                         body=node.msg or ast.Constant(None))
        src = ast.Constant((ast.get_source_segment(self.source, node.test) or "")[:120])
        t = node.test
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and type(t.ops[0]) in OPS:
            args = [ast.Constant(node.lineno), src, t.left, ast.Constant(OPS[type(t.ops[0])]), t.comparators[0], msg]
            call = ast.Call(ast.Name("__tp_cmp__", ast.Load()), args, [])
        elif (isinstance(t, ast.Compare) and len(t.ops) == 2 and all(type(o) in (ast.Lt, ast.LtE) for o in t.ops)):
            # lo < x < hi: record x against both bounds
            args = [ast.Constant(node.lineno), src, t.left, t.comparators[0], t.comparators[1],
                    ast.Constant(",".join(OPS[type(o)] for o in t.ops)), msg]
            call = ast.Call(ast.Name("__tp_range__", ast.Load()), args, [])
        else:
            call = ast.Call(ast.Name("__tp_bool__", ast.Load()), [ast.Constant(node.lineno), src, t, msg], [])
        return ast.copy_location(ast.Expr(call), node)


def _instrumented(path: Path):
    source = path.read_text(encoding="utf-8")
    tree = _Record(source).visit(ast.parse(source, str(path)))
    return compile(ast.fix_missing_locations(tree), str(path), "exec")


def _number(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _child(path: Path, out: Path, threads: int) -> None:
    """Runs in the forked child: the snippet as __main__, its checks recorded."""
    import random

    import numpy
    import torch

    records = []

    def cmp(line, src, a, op, b, msg):
        ok = {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b, "==": a == b, "!=": a != b}[op]
        records.append({"line": line, "src": src, "a": _number(a), "op": op, "b": _number(b), "ok": bool(ok)})
        if not ok:
            raise AssertionError(msg())

    def in_range(line, src, lo, x, hi, ops, msg):
        ops = ops.split(",")
        ok = (lo < x if ops[0] == "<" else lo <= x) and (x < hi if ops[1] == "<" else x <= hi)
        records.append({"line": line, "src": src, "a": _number(x), "op": f"in ({_number(lo):.3g}, {_number(hi):.3g})",
                        "b": None, "ok": bool(ok)})
        if not ok:
            raise AssertionError(msg())

    def boolean(line, src, value, msg):
        records.append({"line": line, "src": src, "a": None, "op": "", "b": None, "ok": bool(value)})
        if not value:
            raise AssertionError(msg())

    code = 0
    os.setpgid(0, 0)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(str(out / "_stderr.txt"), os.O_WRONLY | os.O_CREAT), 2)
    os.environ["SNIPPET_OUT"] = str(out)
    os.chdir(layout.ROOT)
    sys.argv = [str(path)]
    sys.path[0] = str(path.parent)
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    try:
        import types

        main = types.ModuleType("__main__")  # a real module: worker processes pickle by reference to it
        main.__dict__.update({"__file__": str(path), "__builtins__": __builtins__,
                              "__tp_cmp__": cmp, "__tp_bool__": boolean, "__tp_range__": in_range})
        sys.modules["__main__"] = main
        exec(_instrumented(path), main.__dict__)
    except BaseException:  # noqa: BLE001 - a failed check is data here
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        code = 1
    finally:
        (out / "_checks.json").write_text(json.dumps(records))
        os._exit(code)


def run_once(path: Path, threads: int, timeout: float) -> tuple[bool, list[dict], float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(path, out, threads)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() - t0 > timeout:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False, [], timeout
            time.sleep(0.02)
        f = out / "_checks.json"
        records = json.loads(f.read_text()) if f.is_file() else []
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            print((out / "_stderr.txt").read_text()[-1500:], file=sys.stderr)
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, records, time.perf_counter() - t0


def _fmt(lo, hi) -> str:
    if lo is None:
        return ""
    g = lambda v: f"{v:.3g}"  # noqa: E731
    return g(lo) if lo == hi else f"{g(lo)} .. {g(hi)}"


def summarize(runs: dict[str, list[tuple[bool, list[dict], float]]]) -> list[dict]:
    """Per check (its source text, so an edit that moves it keeps its row): the range of
    each side in each condition, and failures."""
    rows: dict[str, dict] = {}
    for cond, results in runs.items():
        for ok, records, _ in results:
            for r in records:
                row = rows.setdefault(r["src"], {"line": r["line"], "src": r["src"], "op": r["op"]})
                row["line"] = r["line"]  # the latest run's line
                c = row.setdefault(cond, {"a": [], "b": [], "fail": 0})
                if r["a"] is not None:
                    c["a"].append(r["a"])
                if r["b"] is not None:
                    c["b"].append(r["b"])
                c["fail"] += not r["ok"]
    out = []
    for row in sorted(rows.values(), key=lambda r: r["line"]):
        values = [v for cond in runs for side in ("a", "b") for v in row.get(cond, {}).get(side, [])]
        if len(set(values)) <= 2 and not any(row.get(c, {}).get("fail") for c in runs):
            continue  # constant sides: not a measurement
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--load", type=int, default=int(os.environ.get("LOAD", 2)))
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--conditions", nargs="+", choices=("quiet", "loaded"), default=["quiet", "loaded"],
                    help="run only these; the table also uses the other condition's last recorded runs")
    ap.add_argument("--table-only", action="store_true", help="run nothing: the table from the recorded runs")
    args = ap.parse_args(argv)
    # Stopped with SIGTERM (kill, pkill): unwind, so the busy loops below are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    snippets = [s for s in runner.discover(layout.ROOT, args.only)
                if not s.is_notebook and s.directives().get("exclusive")]
    threads = os.cpu_count() or 1
    lines = [f"Timing checks: up to {args.runs} quiet and {args.runs} loaded runs ({args.load} busy loops) each, "
             f"{runner.machine()['cpu']}, {threads} cores, CPU capability {runner.cpu_capability(layout.build_dir())}.",
             "", "| Check | Threshold side | Quiet: value | Loaded: value | Failed (quiet / loaded) | Seconds (quiet / loaded) |",
             "|---|---|---|---|---|---|"]
    failed_any = False
    raw_dir = layout.build_dir() / "timing_ranges"
    for s in snippets:
        # Each condition's runs are kept (build/timing_ranges/<snippet>.json), so quiet and
        # loaded runs can be made at different times and still form one table.
        raw = raw_dir / (s.rel.replace("/", "__") + ".json")
        runs: dict[str, list] = {"quiet": [], "loaded": []}
        if raw.is_file():
            runs.update({c: [tuple(r) for r in rs] for c, rs in json.loads(raw.read_text()).items()})
        for cond in [] if args.table_only else args.conditions:
            runs[cond] = []
            loops = []
            if cond == "loaded":
                loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(args.load)]
            try:
                for i in range(args.runs):
                    runs[cond].append(run_once(s.path, threads, args.timeout))
                    ok = runs[cond][-1][0]
                    print(f"{s.rel} {cond} {i + 1}/{args.runs}: {'ok' if ok else 'FAILED'} "
                          f"{runs[cond][-1][2]:.1f}s", flush=True)
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
            raw.parent.mkdir(parents=True, exist_ok=True)
            raw.write_text(json.dumps(runs))
        runs = {c: rs for c, rs in runs.items() if rs}
        secs = {c: [r[2] for r in rs] for c, rs in runs.items()}
        span = lambda c: f"{min(secs[c]):.1f}-{max(secs[c]):.1f} ({len(secs[c])} runs)" if c in secs else "-"  # noqa: E731
        for row in summarize(runs):
            q, ld = row.get("quiet", {}), row.get("loaded", {})
            a = lambda c: "-" if not c else _fmt(min(c["a"]), max(c["a"])) if c.get("a") else "(bool)"  # noqa: E731
            b = _fmt(*(lambda v: (min(v), max(v)) if v else (None, None))(q.get("b", []) + ld.get("b", [])))
            failed_any |= bool(q.get("fail") or ld.get("fail"))
            lines.append(
                f"| `{s.rel}:{row['line']}` `{row['src']}` | {row['op']} {b} | {a(q)} | {a(ld)} | "
                f"{q.get('fail', 0)} / {ld.get('fail', 0)} | "
                f"{span('quiet')} / {span('loaded')} |")
    text = "\n".join(lines)
    out = layout.build_dir() / "timing_ranges.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print("\n" + text + f"\n\ntable in {out}")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
