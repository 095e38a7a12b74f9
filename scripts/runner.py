"""Run the snippets under snippets/, cached, in parallel, with progress.

Each snippet runs in its own forked child of a pre-warmed process
(scripts/zygote.py) as `__main__`, with SNIPPET_OUT pointing at a fresh
temporary folder. Its stdout, results.json and figures become a cache entry:

    build/cache/<key>/        key = hash(runner version; python, torch, numpy and
                                         matplotlib versions; device; the CPU
                                         capability PyTorch uses and the kernel
                                         environment variables; the torch threads
                                         it runs with; snippet path and source)
        _stdout.txt, _status.json, _meta.json, results.json, *.svg, *.png
    build/out/<rel>  ->  symlink to the entry the pages use (rel = path
                         under snippets/ without .py)

An entry also records every repo file the snippet read or imported (an audit
hook sees each open()); the entry is valid only while those files hash the
same. A failed or timed-out run never touches build/out or a good entry: the
previous outputs stay and the build stops naming the file and line.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import layout

ROOT = layout.ROOT
RUNNER_VERSION = "3"
DEFAULT_TIMEOUT = 120.0
DIRECTIVE = re.compile(r"^#\s*build:\s*(.+)$")


class SnippetFailure(RuntimeError):
    """A snippet raised, exited non-zero or timed out."""


@dataclass
class Snippet:
    path: Path  # absolute
    root: Path

    @property
    def rel(self) -> str:
        return self.path.relative_to(self.root).as_posix()

    @property
    def name(self) -> str:
        """Path under snippets/ without .py, e.g. problems/01_x/naive_vs_sdpa."""
        return self.path.relative_to(self.root / "snippets").with_suffix("").as_posix()

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"

    def directives(self) -> dict:
        """`# build: exclusive, timeout=60` lines in the first 30 lines.

        Notebooks always run exclusive: their kernel uses every core.
        """
        if self.is_notebook:
            return {"exclusive": True}
        found: dict = {}
        for line in self.path.read_text(encoding="utf-8").splitlines()[:30]:
            m = DIRECTIVE.match(line.strip())
            if m:
                for part in m.group(1).split(","):
                    k, _, v = part.strip().partition("=")
                    found[k.strip()] = v.strip() or True
        return found


@dataclass
class Result:
    snippet: Snippet
    status: str  # "cached" | "ran" | "failed" | "timeout"
    seconds: float = 0.0
    peak_mib: float | None = None
    error: str | None = None
    line: int | None = None
    detail: str = ""
    entry: Path | None = None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hash(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except OSError:
        return None


def environment(device: str, build: Path, env=os.environ) -> dict:
    """Everything besides the sources and the thread count that decides a snippet's result."""
    return {
        "runner": RUNNER_VERSION,
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
        "numpy": metadata.version("numpy"),
        "matplotlib": metadata.version("matplotlib"),
        "device": device,
        "cpu_capability": cpu_capability(build, env),
        "kernel_env": {k: env[k] for k in layout.KERNEL_ENV if env.get(k)},
    }


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability(build: Path, env=os.environ) -> str:
    """What `torch.backends.cpu.get_cpu_capability()` reports under `env` (e.g. AVX512,
    AVX2, DEFAULT). Asked of a fresh interpreter once per CPU, kernel environment and
    torch, then remembered in <build>/capability.json, so a no-change rebuild stays fast.
    The zygote reports the capability it really got, and the runner checks the two agree."""
    ident = sha256(json.dumps([_cpu_flags(), {k: env.get(k, "") for k in layout.KERNEL_ENV},
                               metadata.version("torch"), sys.executable]).encode())[:16]
    path = build / "capability.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if ident not in known:
        proc = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
            env=dict(env), capture_output=True, text=True, check=True)
        known[ident] = proc.stdout.strip()
        build.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return known[ident]


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system()}


def discover(root: Path, only: list[str] | None = None) -> list[Snippet]:
    """Every snippets/**/*.py except __init__.py and _private.py, sorted.

    `only`: paths (files or folders, relative to root or absolute) to keep.
    """
    snips = [
        Snippet(p, root)
        for p in sorted([*(root / "snippets").rglob("*.py"), *(root / "snippets").rglob("*.ipynb")])
        if not p.name.startswith(("_", ".")) and "_out" not in p.parent.name
        and ".ipynb_checkpoints" not in p.parts
    ]
    if only:
        wanted = [Path(o) if Path(o).is_absolute() else (root / o) for o in only]
        wanted = [w.resolve() for w in wanted]
        snips = [s for s in snips if any(s.path == w or w in s.path.parents for w in wanted)]
    return snips


def snippets_of_page(root: Path, page: Path) -> list[str]:
    """The snippet files a Markdown page includes with --8<--."""
    text = Path(page).read_text(encoding="utf-8")
    return sorted({m for m in re.findall(r'--8<--\s+"(snippets/[^":]+\.py)', text)})


class Cache:
    def __init__(self, root: Path, device: str, build: Path | None = None, env=os.environ,
                 threads=None):
        """`threads(snippet)`: the torch threads the runner gives that snippet (part of its key)."""
        self.root = root
        self.build = build or layout.build_dir(root, env)
        self.dir = self.build / "cache"
        self.out = self.build / "out"
        self.tmp = self.build / "tmp"
        self.env = environment(device, self.build, env)
        self.threads = threads or (lambda s: 1)
        for d in (self.dir, self.out, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def key(self, s: Snippet) -> str:
        head = json.dumps({"env": self.env, "threads": self.threads(s), "path": s.rel}, sort_keys=True).encode()
        return sha256(head + b"\0" + s.path.read_bytes())[:24]

    def lookup(self, s: Snippet) -> Path | None:
        entry = self.dir / self.key(s)
        meta = entry / "_meta.json"
        if not meta.is_file():
            return None
        deps = json.loads(meta.read_text()).get("deps", {})
        for rel, h in deps.items():
            if file_hash(self.root / rel) != h:
                return None
        return entry

    def commit(self, s: Snippet, tmp: Path, status: dict, seconds: float) -> Path:
        """Turn a successful run's folder into the cache entry, atomically."""
        deps = {rel: file_hash(self.root / rel) for rel in status.get("reads", [])}
        meta = {
            "snippet": s.rel,
            "env": self.env,
            "deps": deps,
            "seconds": seconds,
            "peak_mib": status.get("peak_mib"),
            "machine": machine(),
            "torch_threads": status.get("threads"),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (tmp / "_meta.json").write_text(json.dumps(meta, indent=1))
        entry = self.dir / self.key(s)
        if entry.exists():  # same source, changed deps: swap the old entry out
            trash = self.tmp / f"old-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, entry)
        self.publish(s, entry)
        return entry

    def publish(self, s: Snippet, entry: Path) -> None:
        """Point build/out/<name> at entry (atomic symlink swap)."""
        link = self.out / s.name
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(entry, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            return
        tmp_link = link.with_name(link.name + f".tmp{os.getpid()}")
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(target, tmp_link)
        os.replace(tmp_link, link)

    def prune(self, keep: list[Snippet]) -> None:
        """Remove entries and links no current snippet uses."""
        live = {self.key(s) for s in keep}
        names = {s.name for s in keep}
        for entry in self.dir.iterdir():
            if entry.name not in live:
                shutil.rmtree(entry, ignore_errors=True)
        for link in self.out.rglob("*"):
            if link.is_symlink() and link.relative_to(self.out).as_posix() not in names:
                link.unlink()


class Zygote:
    """The pre-warmed process; started only when something must run."""

    def __init__(self, root: Path, env=os.environ, capability: str | None = None):
        env = dict(env, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(root / "scripts" / "zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        hello = json.loads(self.proc.stdout.readline() or "{}")
        if not hello.get("ready"):
            raise RuntimeError("the snippet runner (scripts/zygote.py) failed to start")
        if capability is not None and hello.get("cpu_capability") != capability:
            self.close()
            raise RuntimeError(
                f"the snippet runner got CPU capability {hello.get('cpu_capability')}, the cache key "
                f"says {capability}: delete build/capability.json and build again")

    def submit(self, req: dict) -> None:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()

    def next_done(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the snippet runner (scripts/zygote.py) died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def failure_text(r: Result) -> str:
    where = r.snippet.rel + (f":{r.line}" if r.line else "")
    head = f"{'TIMEOUT' if r.status == 'timeout' else 'FAILED'} {where}: {r.error}"
    return head + ("\n" + r.detail.rstrip() if r.detail.strip() else "")


def _hang_line(stderr: str, path: Path) -> int | None:
    """The snippet's innermost line in a faulthandler dump."""
    lines = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    for f, n in lines:  # faulthandler prints innermost first
        if os.path.abspath(f) == str(path):
            return int(n)
    return None


def run(
    root: Path = ROOT,
    only: list[str] | None = None,
    device: str = "cpu",
    jobs: int | None = None,
    timeout: float | None = None,
    log=print,
    prune: bool | None = None,
    *,
    build: Path | None = None,
    env=None,
    threads: int | None = None,
    keep_going: bool = False,
) -> list[Result]:
    """Run (or reuse) every snippet; raise SnippetFailure on the first failure.

    build: the build folder (default: layout.build_dir). env: the environment the
    snippets run in (default os.environ; the kernel variables in it are part of the
    key). threads: torch threads for every snippet (default: cores/jobs for parallel
    snippets, every core for `exclusive` ones). keep_going: run everything and return
    the failed results too instead of raising.
    """
    t_start = time.perf_counter()
    root = Path(root).resolve()
    env = dict(os.environ if env is None else env)
    snippets = discover(root, only)
    cores = os.cpu_count() or 1
    jobs = max(1, jobs or cores)

    def threads_of(s: Snippet) -> int:
        if threads:
            return threads
        return cores if s.directives().get("exclusive") else max(1, cores // jobs)

    cache = Cache(root, device, build, env, threads_of)
    results: dict[str, Result] = {}
    todo: list[Snippet] = []
    for s in snippets:
        entry = cache.lookup(s)
        if entry is not None:
            meta = json.loads((entry / "_meta.json").read_text())
            cache.publish(s, entry)
            results[s.rel] = Result(s, "cached", meta.get("seconds", 0.0), meta.get("peak_mib"), entry=entry)
        else:
            todo.append(s)
    n_total = len(snippets)
    done_count = 0

    def show(r: Result) -> None:
        nonlocal done_count
        done_count += 1
        mem = f"{r.peak_mib:7.0f} MiB" if r.peak_mib is not None else " " * 11
        log(f"[{done_count:>3}/{n_total}] {r.status:<7} {r.seconds:6.1f}s {mem}  {r.snippet.rel}")

    for s in snippets:
        if s.rel in results:
            show(results[s.rel])

    failures: list[Result] = []
    if todo:
        # Parallel snippets share the cores; `# build: exclusive` ones (timings)
        # run afterwards, alone, with every core.
        parallel = [s for s in todo if not s.directives().get("exclusive")]
        exclusive = [s for s in todo if s.directives().get("exclusive")]
        zyg = Zygote(root, env, cache.env["cpu_capability"])
        batch = Batch(zyg, cache, device, timeout, threads_of, results, show, keep_going)
        try:
            failures += batch.run(parallel, jobs)
            if keep_going or not failures:
                failures += batch.run(exclusive, 1)
        finally:
            zyg.close()
    ordered = [results[s.rel] for s in snippets if s.rel in results]
    write_report(cache, ordered, time.perf_counter() - t_start)
    ran = sum(r.status == "ran" for r in ordered)
    cached = sum(r.status == "cached" for r in ordered)
    failed = sum(r.status in ("failed", "timeout") for r in ordered)
    log(
        f"snippets: {len(snippets)} total, {ran} ran, {cached} cached, {failed} failed "
        f"in {time.perf_counter() - t_start:.1f}s (device {device}, {jobs} parallel, "
        f"CPU capability {cache.env['cpu_capability']})"
    )
    if failures and not keep_going:
        raise SnippetFailure(failure_text(failures[0]))
    if not failures and (prune if prune is not None else not only):
        cache.prune(snippets)
    return ordered


@dataclass
class Batch:
    """Runs lists of snippets through one zygote, `jobs` at a time."""

    zyg: Zygote
    cache: Cache
    device: str
    timeout: float | None
    threads_of: object  # Snippet -> int
    results: dict
    show: object  # Result -> None
    keep_going: bool = False

    def limit(self, s: Snippet) -> float:
        return float(s.directives().get("timeout", self.timeout or DEFAULT_TIMEOUT))

    def submit(self, s: Snippet) -> Path:
        tmp = self.cache.tmp / f"{s.name.replace('/', '__')}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(parents=True)
        self.zyg.submit({
            "id": s.rel, "path": str(s.path), "out": str(tmp), "timeout": self.limit(s),
            "threads": self.threads_of(s), "root": str(self.cache.root),
            "argv": ["--device", self.device] if self.device != "cpu" else [],
        })
        return tmp

    def run(self, batch: list[Snippet], jobs: int) -> list[Result]:
        """Run `batch`; return its failures (stops starting new ones after the first
        unless keep_going)."""
        pending = list(batch)
        running: dict[str, tuple[Snippet, Path]] = {}
        failures: list[Result] = []
        while pending or running:
            while pending and len(running) < jobs and (self.keep_going or not failures):
                s = pending.pop(0)
                running[s.rel] = (s, self.submit(s))
            if not running:
                break
            msg = self.zyg.next_done()
            s, tmp = running.pop(msg["id"])
            r = self.collect(s, tmp, msg)
            if r.status != "ran":
                shutil.rmtree(tmp, ignore_errors=True)
                failures.append(r)
            self.results[s.rel] = r
            self.show(r)
        return failures

    def collect(self, s: Snippet, tmp: Path, msg: dict) -> Result:
        """Turn a finished child into a Result (and a cache entry if it passed)."""
        status_file = tmp / "_status.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {}
        status.setdefault("threads", self.threads_of(s))
        stderr = (tmp / "_stderr.txt").read_text(errors="replace") if (tmp / "_stderr.txt").is_file() else ""
        if msg.get("timed_out"):
            return Result(s, "timeout", msg["seconds"],
                          error=f"timed out: still running after its {self.limit(s):g}s limit",
                          line=_hang_line(stderr, s.path), detail=stderr[-4000:])
        if msg.get("exit") == 0 and status.get("ok"):
            entry = self.cache.commit(s, tmp, status, msg["seconds"])
            return Result(s, "ran", msg["seconds"], status.get("peak_mib"), entry=entry)
        if msg.get("signal"):
            err = f"killed by signal {msg['signal']}"
        else:
            err = status.get("error") or f"exit code {msg.get('exit')}"
        return Result(s, "failed", msg["seconds"], error=err, line=status.get("line"),
                      detail=status.get("traceback") or stderr[-4000:])


def write_report(cache: Cache, results: list[Result], seconds: float) -> None:
    report = {
        "machine": machine(),
        "env": cache.env,
        "seconds": seconds,
        "snippets": [
            {
                "path": r.snippet.rel,
                "status": r.status,
                "cache_hit": r.status == "cached",
                "seconds": round(r.seconds, 3),
                "peak_mib": None if r.peak_mib is None else round(r.peak_mib, 1),
                **({"error": r.error, "line": r.line} if r.error else {}),
            }
            for r in results
        ],
    }
    path = cache.build / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)
