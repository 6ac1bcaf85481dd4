#!/usr/bin/env bash
# Quick start, command 2: set up and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The dashboard's browser test drives Debian's chromium; install it where it is missing (CI).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "the dashboard's browser test needs Debian's chromium: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
