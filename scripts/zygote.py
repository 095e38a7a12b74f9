"""A pre-warmed process that runs snippets in forked children.

`import torch` costs seconds per fresh interpreter; a build of many small
snippets would spend most of its time there. This process imports torch,
numpy and matplotlib once, then forks one child per snippet. A child runs the
snippet as `__main__` (like `python snippet.py`) in its own process group, so a
crash or a timeout kills only that child and anything it started.

Nothing here runs a parallel torch op: after libgomp has started threads a
forked child that uses torch would hang.

Protocol (JSON lines): requests on stdin
    {"id": str, "path": abs path, "out": abs dir, "timeout": s, "threads": n,
     "argv": [...], "root": repo root}
and replies on stdout
    {"ready": true, "cpu_capability": "AVX512"|"AVX2"|...}  once, at start
    {"id": ..., "exit": code, "signal": n|null, "timed_out": bool, "seconds": s}
The child writes its own record to <out>/_status.json (see _child).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import torch  # noqa: E402
import torch.nn.functional  # noqa: E402,F401


def _rss_mib(field: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _snippet_traceback(exc: BaseException, path: str) -> str:
    """The traceback from the snippet's first frame on (no runner frames)."""
    import traceback

    te = traceback.TracebackException.from_exception(exc)
    frames = list(te.stack)
    for i, fr in enumerate(frames):
        if os.path.abspath(fr.filename) == path:
            te.stack = traceback.StackSummary.from_list(frames[i:])
            break
    return "".join(te.format())


# Two cells the runner wraps around a notebook (and removes from the saved copy): the first
# records every file the kernel opens, the last prints those and every imported module's file,
# so the cache key holds exactly what the notebook read.
_TRACK_CELL = """import os as _tp_os, sys as _tp_sys
_tp_reads = set()
def _tp_audit(event, args):
    if event == "open" and args and isinstance(args[0], str):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        if "r" in mode and "+" not in mode:
            _tp_reads.add(_tp_os.path.abspath(args[0]))
_tp_sys.addaudithook(_tp_audit)
del _tp_audit"""
_REPORT_CELL = """import json as _tp_json
print("__TP_READS__" + _tp_json.dumps(sorted(_tp_reads | {_tp_os.path.abspath(m.__file__)
      for m in list(_tp_sys.modules.values()) if getattr(m, "__file__", None)})))"""


def _run_notebook(path: str, root: str, timeout: float) -> set[str] | None:
    """Execute a stored notebook in a real Jupyter kernel; save it executed.

    The kernel starts in the repository root (as `python snippet.py` would).
    Writes notebook.ipynb (with outputs) to SNIPPET_OUT and echoes the cells'
    printed output to stdout, so the page can quote it like a script's.
    Returns the files the kernel opened or imported (None if it failed before saying).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_TRACK_CELL))
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT_CELL))
    os.environ.pop("MPLBACKEND", None)  # the kernel uses the inline backend: figures land in the notebook
    client = NotebookClient(nb, timeout=int(timeout), kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": root}}, allow_errors=False)
    reads = None
    try:
        client.execute()
    finally:
        track, report = nb.cells.pop(0), nb.cells.pop()
        for o in report.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            if text.startswith("__TP_READS__"):
                reads = set(json.loads(text[len("__TP_READS__"):]))
        if track.get("execution_count"):  # number the notebook's own cells from 1
            for cell in nb.cells:
                if cell.get("execution_count"):
                    cell.execution_count -= 1
                for o in cell.get("outputs", []):
                    if o.get("execution_count"):
                        o["execution_count"] -= 1
        nbformat.write(nb, os.path.join(os.environ["SNIPPET_OUT"], "notebook.ipynb"))
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream" and o.get("name") == "stdout":
                    sys.stdout.write(o.get("text", ""))
        sys.stdout.flush()
    return reads


def _notebook_error(exc: BaseException, path: str) -> dict:
    """Which cell failed, and the kernel's traceback."""
    import nbformat

    msg = str(exc)
    cell = None
    nb = nbformat.read(os.path.join(os.environ["SNIPPET_OUT"], "notebook.ipynb"), as_version=4)
    for i, c in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            cell = i + 1
            err = next(o for o in c["outputs"] if o.get("output_type") == "error")
            msg = f"{err['ename']}: {err['evalue']}"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the kernel colours its tracebacks
    return {"ok": False, "error": f"cell {cell}: {msg}" if cell else msg, "line": None, "cell": cell,
            "traceback": plain[-4000:]}


def _child(req: dict) -> None:
    """Runs in the forked child; never returns."""
    import random
    import runpy
    import traceback

    code = 0
    out = req["out"]
    path = req["path"]
    root = req["root"]
    import faulthandler

    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fd_out = os.open(os.path.join(out, "_stdout.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fd_err = os.open(os.path.join(out, "_stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdin = open(0, closefd=False)
    # On timeout the parent sends SIGUSR1 first: the stack (with the hanging
    # line) goes to _stderr.txt before the process group is killed.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    os.environ["SNIPPET_OUT"] = out
    os.environ["PYTHONHASHSEED"] = "0"
    os.chdir(root)
    sys.argv = [path, *req.get("argv", [])]
    sys.path[0] = os.path.dirname(path)

    reads: set[str] = set()
    skip = (os.path.join(root, "build") + os.sep, os.path.join(root, ".venv") + os.sep, out)

    def local(p: str) -> bool:
        """A repository file that decides the snippet's result (not its own outputs or the build)."""
        return (p.startswith(root + os.sep) and not p.startswith(skip) and p != path
                and p != os.path.abspath(__file__) and not p.endswith(".pyc") and os.path.isfile(p))

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], str):
            p = os.path.abspath(args[0])
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            if "r" in mode and "+" not in mode and local(p):
                reads.add(p)

    sys.addaudithook(audit)
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(int(req.get("threads", 1)))
    base = _rss_mib("VmRSS:")
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter
            fh.write("5")
    except OSError:
        pass
    status = {"ok": True}
    t0 = time.perf_counter()
    try:
        if path.endswith(".ipynb"):
            kernel_reads = _run_notebook(path, root, float(req["timeout"]))
            # The kernel is another process: take the files it reported, filtered like ours.
            reads.update(p for p in kernel_reads or () if local(p))
        else:
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            code = exc.code if isinstance(exc.code, int) else 1
            status = {"ok": False, "error": f"SystemExit({exc.code!r})"}
    except BaseException as exc:  # noqa: BLE001 - report everything
        code = 1
        if path.endswith(".ipynb"):
            try:
                status = _notebook_error(exc, path)
            except Exception:  # noqa: BLE001 - the notebook could not even be written
                status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "line": None}
        else:
            line = None
            for frame, lineno in traceback.walk_tb(exc.__traceback__):
                if os.path.abspath(frame.f_code.co_filename) == path:
                    line = lineno
            status = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "line": line,
                "traceback": _snippet_traceback(exc, path),
            }
    status["seconds"] = time.perf_counter() - t0
    status["threads"] = torch.get_num_threads()  # what the snippet ran with (it may set its own)
    status["peak_mib"] = max(0.0, _rss_mib("VmHWM:") - base)
    # Local modules the snippet imported (their .py, not the cached .pyc).
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and f.endswith(".py"):
            f = os.path.abspath(f)
            if local(f):
                reads.add(f)
    status["reads"] = sorted(os.path.relpath(p, root) for p in reads)
    try:
        import atexit

        atexit._run_exitfuncs()  # what a normal interpreter exit would run (e.g. multiprocessing cleanup)
        matplotlib.pyplot.close("all")
        sys.stdout.flush()
        sys.stderr.flush()
        tmp = os.path.join(out, "_status.json.tmp")
        with open(tmp, "w") as fh:
            json.dump(status, fh)
        os.replace(tmp, os.path.join(out, "_status.json"))
    finally:
        os._exit(code)


def main() -> None:
    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    send({"ready": True, "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    running: dict[int, tuple[dict, float]] = {}
    eof = False
    buf = b""
    while not eof or running:
        if not eof:
            ready, _, _ = select.select([sys.stdin], [], [], 0.01)
            if ready:
                chunk = os.read(sys.stdin.fileno(), 65536)
                if not chunk:
                    eof = True
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    req = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _child(req)
                    try:
                        os.setpgid(pid, pid)
                    except OSError:
                        pass
                    running[pid] = (req, time.monotonic())
        else:
            time.sleep(0.01)
        now = time.monotonic()
        for pid, (req, t0) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del running[pid]
                send({
                    "id": req["id"],
                    "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "timed_out": req.get("_killed", False),
                    "seconds": now - t0,
                })
                continue
            if "_dumped" not in req and now - t0 > float(req["timeout"]):
                req["_dumped"] = now
                req["_killed"] = True
                _signal(pid, signal.SIGUSR1, group=False)
            elif "_dumped" in req and now - req["_dumped"] > 0.5 and not req.get("_gone"):
                req["_gone"] = True
                _signal(pid, signal.SIGKILL, group=True)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main()
