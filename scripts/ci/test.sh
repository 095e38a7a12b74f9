#!/usr/bin/env bash
# CI step "Test": the README's test command (make test: every snippet, cached; the strict
# MkDocs build; the browser tests) with the runner's settings, then check that the site the
# deploy job publishes is there.
#   --dry-run   print the settings and the command, change nothing
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/ci/env.sh
ci_show_env
if [ "${1:-}" = --dry-run ]; then
  echo "would run: make test"
  exit 0
fi
make test
[ -f site/index.html ] || { echo "ci: make test left no site/index.html to publish" >&2; exit 1; }
