#!/usr/bin/env bash
# Quick start, command 2: set up and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# Debian packages the tests drive: chromium for the dashboard's browser test, and PostgreSQL's
# server binaries for the shared-store tests, which start their own server (tests/pgserver.py;
# Debian puts them in /usr/lib/postgresql/<version>/bin, off PATH). Installed where missing (CI).
need=()
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  need+=(chromium chromium-driver)
fi
if [ -z "${SMALLFIRST_PG_BINDIR:-}" ] && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "the tests need Debian packages: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
