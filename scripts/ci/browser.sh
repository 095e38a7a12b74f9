#!/usr/bin/env bash
# Print the path of the Chrome/Chromium that the browser tests drive (they read
# CHROMIUM_PATH, default /usr/bin/chromium), or fail naming what was tried. The first
# one that runs wins:
#   $CHROMIUM_PATH          whatever the caller chose
#   $CHROME_BIN, google-chrome, google-chrome-stable
#                           Google Chrome, preinstalled on GitHub's Ubuntu runners (their
#                           image sets CHROME_BIN=/usr/bin/google-chrome)
#   /usr/bin/chromium       Debian's chromium package (what scripts/setup.sh installs)
# A snap shim (Ubuntu's transitional chromium packages) is skipped: it runs no browser here.
set -euo pipefail

usable() {
  local path
  path=$(command -v -- "$1" 2>/dev/null) || return 1
  [ -x "$path" ] || return 1
  case "$(readlink -f -- "$path")" in /snap/*) return 1 ;; esac
  if head -c 2 -- "$path" | grep -q '#!' && grep -qs '/snap/\|snap install\|snap run' -- "$path"; then
    return 1
  fi
  "$path" --version >/dev/null 2>&1 || return 1
  printf '%s\n' "$path"
}

tried=()
for candidate in "${CHROMIUM_PATH:-}" "${CHROME_BIN:-}" google-chrome google-chrome-stable /usr/bin/chromium; do
  [ -n "$candidate" ] || continue
  usable "$candidate" && exit 0
  tried+=("$candidate")
done
echo "ci: no usable Chrome or Chromium (tried: ${tried[*]}); set CHROMIUM_PATH" >&2
exit 1
