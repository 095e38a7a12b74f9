#!/usr/bin/env bash
# Set up everything the build and the tests need, on a fresh Debian machine:
#   .venv with requirements.txt, node_modules with package-lock.json (KaTeX),
#   and Chromium for the browser tests. Each step is skipped when already done.
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
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing requirements.txt"
  python3 -m venv .venv
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
