"""Shared fixtures: policies written to real files, so errors carry real file names and lines."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

# numpy's reference MiniLM as `smallfirst serve` runs it: one BLAS thread. Two thrash on a busy
# 2-core machine (one test took 93 s instead of 24). Read when numpy first loads, so set here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as `fakes`

# The project's shared datasets sit beside the checkout (CI lays a copy of shared/ there too).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

MINIMAL_POLICY = """\
version: 1
models:
  local_classifier: {provider: embedding}
  local_default: {provider: llamacpp}
  frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}
prices:
  claude-sonnet-4-6: {input: 3.00, output: 15.00}
  local: {usd_per_hour: 0.05}
tasks:
  classify_issue:
    local: true
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
    min_confidence: 0.72
    escalate_labels: [security, access, unknown]
    max_input_chars: 6000
  summarize_log: {local: true, model: local_default, min_confidence: 0.68, max_input_chars: 12000}
  shape_json:
    local: true
    model: local_default
    min_confidence: 0.5
    schema: {type: object, properties: {file: {type: string}}, required: [file]}
  propose_code_change: {local: false}
  security_review: {local: false}
hard_stops:
  access: ['registry auth', 'SSO']
rollout: {mode: live, kill_switch: false, local_groups: ['*']}
"""


@pytest.fixture
def write_policy(tmp_path: Path):
    def write(text: str = MINIMAL_POLICY, name: str = "policy.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text), encoding="utf-8")
        return p

    return write


# ---------------------------------------------------------------------- a real PostgreSQL (tests/pgserver.py)


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session, started by the tests themselves. Missing binaries
    fail the tests with how to install them; only SMALLFIRST_SKIP_POSTGRES=1 skips them."""
    import os

    from pgserver import PgServer, PgUnavailable

    if os.environ.get("SMALLFIRST_SKIP_POSTGRES") == "1":
        pytest.skip("SMALLFIRST_SKIP_POSTGRES=1")
    try:
        server = PgServer.start_new()
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A fresh database on the session's server, migrated, for one test."""
    from smallfirst.schema import migrate
    from smallfirst.store import close_pools, connect_postgres

    if not pg_server.running():  # a test that stopped it and failed before starting it again
        pg_server.start()
    url = pg_server.create_database()
    conn = connect_postgres(url)
    migrate(conn)
    conn.close()
    yield url
    close_pools()
