#!/usr/bin/env bash
# Quick start, command 1: set up and run the nightly CI-failure triage on the bundled models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/smallfirst demo "$@"
