"""Schemathesis against the service's own OpenAPI document: whatever it generates, no 5xx.

Bounded: a few examples per operation, no deadline (2-core CI machines), the frontier a local
fake, the local model a stub. The admin token is given, so admin calls are exercised too.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from fakes import FakeAnthropic
from smallfirst.audit import AuditLog
from smallfirst.policy import load_policy
from smallfirst.server.openapi import document
from test_server import KEY, KEY_ENV, ServerThread, stub_backends
from test_server_admin import AUTH, TOKEN, _policy_file_text


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        with FakeAnthropic.start_in_thread(api_key=KEY) as frontier:
            path = tmp / "policy.yaml"
            path.write_text(_policy_file_text(frontier), encoding="utf-8")
            audit = AuditLog.sqlite(tmp / "audit.db")
            srv = ServerThread(load_policy(path), audit=audit, backends=stub_backends(), admin_token=TOKEN,
                               policy_path=path)
            yield srv
            srv.stop()


# The document the service serves, built by the same function (it needs only the task names);
# loading it at import keeps schemathesis off its lazy-fixture path, which pytest 9 breaks.
TASKS = ["classify_issue"]
schema = schemathesis.openapi.from_dict(document(TASKS))


def test_the_served_document_is_the_one_under_test(served):
    assert served.get("/openapi.json")[2] == document(TASKS)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_gets_a_server_error(case, served):
    case.call_and_validate(base_url=served.base_url, headers=dict(AUTH), checks=[not_a_server_error])
