"""The `smallfirst` command end to end, on the bundled policy and the real bundled models."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from smallfirst.backends.embedding import EmbeddingBackend
from smallfirst.cli import main
from smallfirst.policy import load_policy

from test_router import REGISTRY_403

ROUTINE_MAVEN = """\
[INFO] --- maven-compiler-plugin:3.11.0:compile (default-compile) @ core ---
[INFO] Compiling 42 source files to /home/runner/work/app/core/target/classes
[ERROR] COMPILATION ERROR :
[ERROR] /home/runner/work/app/core/src/main/java/org/acme/core/Parser.java:[88,23] cannot find symbol
  symbol:   method readTree(java.io.InputStream)
  location: variable mapper of type com.fasterxml.jackson.databind.ObjectMapper
[ERROR] /home/runner/work/app/core/src/main/java/org/acme/core/Parser.java:[95,14] incompatible types: com.fasterxml.jackson.databind.JsonNode cannot be converted to org.acme.core.Node
[INFO] 2 errors
[INFO] ------------------------------------------------------------------------
[INFO] BUILD FAILURE
[INFO] ------------------------------------------------------------------------
[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.11.0:compile (default-compile) on project core: Compilation failure: Compilation failure:
[ERROR] /home/runner/work/app/core/src/main/java/org/acme/core/Parser.java:[88,23] cannot find symbol
[ERROR] -> [Help 1]
"""


def run_cli(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smallfirst.cli", *args], input=stdin, capture_output=True, timeout=300)


@pytest.mark.slow
def test_route_prints_one_json_decision_and_audits_it(tmp_path):
    db = tmp_path / "audit.db"
    p = run_cli(["route", "--task", "classify_issue", "--audit", str(db), "-"], ROUTINE_MAVEN.encode())
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    for key in ("decision_id", "task_type", "route", "reason", "label", "confidence", "hard_stop", "answer", "latency_ms"):
        assert key in out
    assert out["route"] == "local" and out["reason"] is None and out["label"] == "build"
    assert out["confidence"] >= 0.72
    row = sqlite3.connect(db).execute("SELECT decision_id, local_model_sha256 FROM decisions").fetchone()
    assert row[0] == out["decision_id"] and len(row[1]) == 64


@pytest.mark.slow
def test_published_failure_registry_403_is_escalated_as_hard_stop_access_whatever_the_model_calls_it(tmp_path):
    # The Maven-only classifier filed this install failure under a routine label with high
    # confidence; the multi-ecosystem one, asked directly, calls it access ...
    policy = load_policy(None)
    spec = policy.tasks["classify_issue"]
    local = EmbeddingBackend(policy.models["local_classifier"], policy).complete_sync(REGISTRY_403, spec)
    assert local.label in spec.labels
    # ... and whatever it says, the router escalates it for the hard stop before any model runs,
    # exit code 0.
    p = run_cli(["route", "--task", "classify_issue", "--audit", str(tmp_path / "a.db"), "-"], REGISTRY_403.encode())
    assert p.returncode == 0
    out = json.loads(p.stdout)
    assert out["route"] == "frontier" and out["reason"] == "hard_stop_access"
    assert out["answer"] == "escalated; no frontier configured"
    assert out["packet"]["reason"] == "hard_stop_access"


def test_route_reads_a_file_argument(tmp_path, capsys):
    f = tmp_path / "change.diff"
    f.write_text("--- a/x.py\n+++ b/x.py\n")
    assert main(["route", "--task", "propose_code_change", "--audit", str(tmp_path / "a.db"), str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "policy_requires_frontier"


def test_empty_input_exits_2_with_a_message_and_is_audited(tmp_path):
    db = tmp_path / "a.db"
    p = run_cli(["route", "--task", "classify_issue", "--audit", str(db), "-"], b"")
    assert p.returncode == 2 and b"input is empty" in p.stderr
    assert sqlite3.connect(db).execute("SELECT outcome FROM decisions").fetchone()[0] == "rejected"


def test_unknown_task_escalates_with_exit_0(tmp_path, capsys):
    f = tmp_path / "in.txt"
    f.write_text("translate this")
    assert main(["route", "--task", "no_such_task", "--audit", str(tmp_path / "a.db"), str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "unknown_task"


def test_input_over_the_limit_escalates_as_input_too_large(tmp_path, capsys):
    f = tmp_path / "big.log"
    f.write_text("[INFO] line\n" * 20000)  # 240,000 characters: over classify_issue's 200,000
    assert main(["route", "--task", "classify_issue", "--audit", str(tmp_path / "a.db"), str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "input_too_large"


def test_missing_input_file_exits_2(tmp_path, capsys):
    assert main(["route", "--task", "classify_issue", "--audit", str(tmp_path / "a.db"), str(tmp_path / "nope")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_audit_tail_shows_recent_decisions_as_table_and_json(tmp_path, capsys):
    db = tmp_path / "a.db"
    f = tmp_path / "in.txt"
    f.write_text("refactor this")
    for _ in range(3):
        main(["route", "--task", "propose_code_change", "--audit", str(db), str(f)])
    capsys.readouterr()
    assert main(["audit", "tail", "--audit", str(db), "-n", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and "policy_requires_frontier" in table[1]
    assert main(["audit", "tail", "--audit", str(db), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(r["task_type"] == "propose_code_change" for r in rows)


def test_audit_tail_on_a_missing_database_is_a_clear_error(tmp_path, capsys):
    assert main(["audit", "tail", "--audit", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_doctor_checks_pinned_hashes_and_prints_licences():
    p = run_cli(["doctor"])
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db (pinned: ok)" in out
    assert "e70c4b4413ff1e44112c428991f5d890d009ba65f6ab3478edd33341fc2a6249 (pinned: ok)" in out  # the int8 graph
    assert "onnxruntime" in out
    assert "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 (pinned: ok)" in out
    assert "Gemma Terms of Use" in out and "Apache-2.0" in out
    assert "frontier_default" in out


@pytest.mark.slow
def test_demo_triages_the_bundled_logs_offline_and_summarises(tmp_path):
    p = run_cli(["demo", "--audit", str(tmp_path / "demo.db")])
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    rows = [line for line in out.splitlines() if line.startswith("bump-")]
    assert 15 <= len(rows) <= 30
    assert any("hard_stop_access" in r for r in rows)  # the registry 403 must escalate
    assert "local acceptance:" in out and "escalations by reason:" in out and "estimated cost:" in out
    n = sqlite3.connect(tmp_path / "demo.db").execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert n == len(rows)


def test_wrong_model_hash_in_policy_escalates_with_local_error(tmp_path, capsys, write_policy):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    from conftest import MINIMAL_POLICY

    policy = write_policy(MINIMAL_POLICY.replace(
        "local_default: {provider: llamacpp}",
        f"local_default: {{provider: llamacpp, path: '{bogus}', sha256: '{'a' * 64}'}}"))
    f = tmp_path / "in.log"
    f.write_text("BUILD FAILED\n")
    assert main(["route", "--task", "summarize_log", "--policy", str(policy), "--audit", str(tmp_path / "a.db"), str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "local_error" and "sha256" in out["error"]
