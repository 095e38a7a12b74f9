"""Where the build keeps what it makes, and the environment variables that steer it.

Everything generated lives under one build folder (ignored by git):

    build/cache/<key>/     one cache entry per snippet run (runner.py)
    build/out/<name>       symlink to the entry the pages use
    build/tmp/             runs in progress
    build/report.json      the last run's status per snippet

`TP_BUILD_DIR` moves that folder (relative paths are taken from the repository
root); `make portability` uses it to keep one cache per CPU kernel set.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR_ENV = "TP_BUILD_DIR"
COMMAND_ENV = "TP_MKDOCS_COMMAND"  # "serve" or "build", set by the MkDocs hooks at startup
# Environment variables that choose which CPU kernels PyTorch, MKL and oneDNN use:
# results computed under one setting are not results for another.
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def build_dir(root: Path = ROOT, env=os.environ) -> Path:
    """The build folder: $TP_BUILD_DIR if set, else <root>/build."""
    value = env.get(BUILD_DIR_ENV)
    if not value:
        return Path(root) / "build"
    path = Path(value)
    return path if path.is_absolute() else Path(root) / path
