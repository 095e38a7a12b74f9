# shellcheck shell=bash
# Sourced by scripts/ci/setup.sh and scripts/ci/test.sh: what GitHub's Ubuntu runners need
# on top of the Debian defaults of scripts/setup.sh and the Makefile.
#   TORCH_INDEX_URL  PyPI's Linux torch is the multi-GB CUDA build; PyTorch's CPU index has
#                    torch==2.13.0 as 2.13.0+cpu (scripts/setup.sh installs it first).
#                    Set it to an empty string to install torch from PyPI instead.
#   SKIP_CHROMIUM=1  Ubuntu's chromium package is a snap shim: no apt-get; the tests drive
#   CHROMIUM_PATH    the browser the runner already has (scripts/ci/browser.sh).
export TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
export SKIP_CHROMIUM=1
CHROMIUM_PATH=$(bash "$(dirname "${BASH_SOURCE[0]}")/browser.sh")
export CHROMIUM_PATH

ci_show_env() {
  printf '%s=%s\n' TORCH_INDEX_URL "$TORCH_INDEX_URL" SKIP_CHROMIUM "$SKIP_CHROMIUM" CHROMIUM_PATH "$CHROMIUM_PATH"
}
