#!/usr/bin/env bash
# Set up everything the build and the tests need, on a fresh Debian machine:
#   .venv with requirements.txt, node_modules with package-lock.json (KaTeX),
#   and Chromium for the browser tests. Each step is skipped when already done.
# Opt-in settings (unset on Debian machines; scripts/ci/env.sh sets them on GitHub's Ubuntu runners):
#   TORCH_INDEX_URL=<index>  install requirements.txt's torch pin from that index first
#                            (https://download.pytorch.org/whl/cpu: the CPU wheel, 2.13.0+cpu,
#                            which satisfies torch==2.13.0; PyPI's Linux torch is the CUDA build)
#   SKIP_CHROMIUM=1          no apt-get install chromium (use CHROMIUM_PATH's browser instead)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { echo "setup: apt-get update"; sudo_ apt-get update -qq; apt_updated=1; }
  echo "setup: apt-get install $*"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -n "${TORCH_INDEX_URL:-}" ]; then  # a venv set up from another index is not this one
  want=$(printf '%s\n%s\n' "$want" "$TORCH_INDEX_URL" | sha256sum | cut -d' ' -f1)
fi
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing requirements.txt"
  python3 -m venv .venv
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_pin=$(sed -n 's/^\(torch==[^ #]*\).*/\1/p' requirements.txt)
    [ -n "$torch_pin" ] || { echo "setup: no torch==<version> line in requirements.txt" >&2; exit 1; }
    echo "setup: $torch_pin from $TORCH_INDEX_URL"
    .venv/bin/pip install -q --disable-pip-version-check --index-url "$TORCH_INDEX_URL" "$torch_pin"
  fi
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

command -v npm >/dev/null || apt_install nodejs npm
lock=node_modules/.lock.sha256
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f node_modules/katex/dist/katex.min.js ] || [ "$(cat "$lock" 2>/dev/null)" != "$want" ]; then
  echo "setup: npm ci (KaTeX, served by the site itself)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$lock"
fi

if [ "${SKIP_CHROMIUM:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
