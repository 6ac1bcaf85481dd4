#!/usr/bin/env bash
# Quick start, command 2: set up and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The dashboard's browser test drives Debian's chromium; install it where it is missing (CI).
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
fi
exec .venv/bin/python -m pytest -q "$@"
