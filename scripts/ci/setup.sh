#!/usr/bin/env bash
# CI step "Set up": scripts/setup.sh with the runner's settings (scripts/ci/env.sh), then
# check that torch is the CPU build and that the browser starts.
#   --dry-run   print the settings and the command, change nothing
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/ci/env.sh
ci_show_env
if [ "${1:-}" = --dry-run ]; then
  echo "would run: bash scripts/setup.sh"
  exit 0
fi
bash scripts/setup.sh
.venv/bin/python - <<'PY'
import torch

assert torch.version.cuda is None, (
    f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda}); the runner needs the "
    "CPU wheel: is TORCH_INDEX_URL set, and was .venv created afresh?")
print(f"ci: torch {torch.__version__} (CPU build), CPU capability {torch.backends.cpu.get_cpu_capability()}")
PY
echo "ci: browser $("$CHROMIUM_PATH" --version) ($CHROMIUM_PATH)"
