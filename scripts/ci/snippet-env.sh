#!/usr/bin/env bash
# CI step "Snippet cache key": print `key=<python>-<torch>-<CPU capability>` for $GITHUB_OUTPUT.
# The snippet runner keys each cache entry on these (scripts/runner.py, environment()), so a
# restored build/ made under another Python, torch or kernel set (GitHub's runners are AVX2 or
# AVX-512 machines) would be all misses; keying the Actions cache on them too keeps one cached
# build/ per environment. Needs .venv (run after scripts/ci/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -c '
import platform, torch
print(f"key=py{platform.python_version()}-torch{torch.__version__}-{torch.backends.cpu.get_cpu_capability()}")
'
