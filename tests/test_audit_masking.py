"""No secret reaches a stored byte: secrets of every shape, hidden in log text and obfuscated,
routed through a real Router into a real SQLite audit (WAL included), a store that fails (so the
spill file is written), the escalation packet, and the learn store: classify_issue learns from
its escalations with `keep_inputs: true`, so the frontier's answers (an Anthropic-protocol server
on 127.0.0.1) are kept with the masked input, in a real SQLite learn store and in a failing one
that spills.

The local model here is the worst case for privacy: it quotes what it was given, in its answer,
in its label and in its error messages, after compression has cut the input as it does for real.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import FakeAnthropic, Reply, echo_reply
from secret_shapes import OBFUSCATIONS, SHAPES, leaks, obfuscate, plant
from smallfirst.audit import AuditLog
from smallfirst.learn_store import LearnLog
from smallfirst.policy import parse_policy
from smallfirst.router import Router
from smallfirst.tasks import LocalOutput, Task

POLICY = """\
version: 1
models:
  local_classifier: {provider: embedding}
  local_default: {provider: llamacpp}
  frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: KEY_ENV, base_url: 'URL', retries: 0}
tasks:
  classify_issue:
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
    min_confidence: 0.72
    escalate_labels: [security, access, unknown]
    max_input_chars: 40000
    learn: {keep_inputs: true}
  summarize_log: {model: local_default, min_confidence: 0.68, max_input_chars: 40000}
"""
ROUTINE = ["[INFO] Building app 1.0-SNAPSHOT", "[INFO] --- maven-compiler-plugin:3.10.1:compile (default-compile) ---",
           "[ERROR] /src/main/java/App.java:[10,5] cannot find symbol", "Downloading from central: https://repo.example.org/x.pom",
           "[INFO] Tests run: 12, Failures: 0, Errors: 0, Skipped: 0", "npm WARN deprecated left-pad@1.3.0",
           "   at com.acme.Build.run(Build.java:42)", "ok 17 - parses the manifest"]
BEHAVIOURS = ("accept", "echo", "fail", "label_echo")
KEY_ENV, KEY = "SMALLFIRST_TEST_MASKING_FRONTIER_KEY", "sk-ant-masking-test-0123456789"


@pytest.fixture(scope="module")
def frontier():
    """The frontier: a task label for some escalations (kept as a labelled example), for the
    others an echo of the packet it was sent (kept unlabelled, with the input all the same)."""
    os.environ[KEY_ENV] = KEY
    with FakeAnthropic.start_in_thread(api_key=KEY) as srv:
        srv.reply_fn = lambda body: Reply("build") if len(json.dumps(body)) % 2 else echo_reply(body)
        yield srv
    del os.environ[KEY_ENV]


class QuotingLocal:
    """A local model that repeats its (possibly compressed) input back: in its answer at low
    confidence, in an exception message, or as a label outside the task's labels."""

    name, sha256 = "quoting-model", "0" * 64

    def __init__(self, behaviour: str):
        self.behaviour = behaviour

    async def complete(self, text, spec):
        if self.behaviour == "fail":
            raise RuntimeError(f"backend choked on input: {text[:300]} ... {text[-300:]}")
        label = ("build" if self.behaviour != "label_echo" else text[:80]) if spec.labels else None
        answer = "build" if self.behaviour == "accept" else text[-800:]
        confidence = 0.99 if self.behaviour in ("accept", "label_echo") else 0.3
        return LocalOutput(answer=answer, model=self.name, label=label, confidence=confidence,
                           confidence_raw=confidence, model_sha256=self.sha256)


class FailingSink:
    path = None

    def write_batch(self, rows):
        raise OSError("disk full")

    def write(self, rows):  # as a learn store
        raise OSError("disk full")

    def close(self):
        pass


class Both:
    """The router's audit (or learn) log: a real SQLite one and one whose store fails and spills."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def submit(self, record):
        self.b.submit(copy.copy(record))  # the writer threads each take their own record (or capture)
        self.a.submit(record)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.a.flush(timeout) and self.b.flush(timeout)

def stored_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class Stores:
    """A real SQLite audit and learn store, and a failing one of each that spills, in one folder,
    shared by many routed texts: every text's secrets are looked for in everything stored so far."""

    def __init__(self, folder: Path, frontier: FakeAnthropic):
        self.folder = folder
        self.frontier = frontier
        self.ok = AuditLog.sqlite(folder / "audit.db", flush_interval_s=0.001)
        self.failing = AuditLog(FailingSink(), spill_path=folder / "failing.db.spill.jsonl", max_pending=0,
                                flush_interval_s=0.001)
        self.learn = LearnLog.open(folder / "learn.db", flush_interval_s=0.001)
        self.learn_failing = LearnLog(FailingSink(), spill_path=folder / "failing-learn.db.spill.jsonl", max_pending=0,
                                      flush_interval_s=0.001)
        self.policy = parse_policy(POLICY.replace("KEY_ENV", KEY_ENV).replace("URL", frontier.base_url))

    def route(self, text: str, task: str, behaviour: str, *, whole_files: bool = True) -> dict[str, bytes | str]:
        """Route `text`; what was stored: the database and its WAL, the spill file (or, with
        `whole_files` off, this decision's row and spilled line), and the packet as sent and as
        printed."""
        backend = QuotingLocal(behaviour)
        router = Router(self.policy, audit=Both(self.ok, self.failing),  # type: ignore[arg-type]
                        learn=Both(self.learn, self.learn_failing),
                        backends={"local_classifier": backend, "local_default": backend})
        sent = len(self.frontier.requests)
        result = router.route(Task(text, task))
        router.close()  # flushes both audit logs
        assert self.learn.flush() and self.learn_failing.flush()
        spill = (self.folder / "failing.db.spill.jsonl").read_text(encoding="utf-8")
        assert result.decision_id in spill, "the failing store spilled nothing"
        learned = task == "classify_issue" and result.outcome == "answered_frontier"
        if learned:
            learn_spill = (self.folder / "failing-learn.db.spill.jsonl").read_text(encoding="utf-8")
            assert result.decision_id in learn_spill, "the failing learn store spilled nothing"
        if whole_files:
            out: dict[str, bytes | str] = dict(stored_bytes(self.folder))
        else:
            conn = sqlite3.connect(self.folder / "audit.db")
            row = conn.execute("SELECT * FROM decisions WHERE decision_id = ?", (result.decision_id,)).fetchone()
            conn.close()
            out = {"row": json.dumps(row), "spilled": next(line for line in spill.splitlines() if result.decision_id in line)}
            if learned:
                conn = sqlite3.connect(self.folder / "learn.db")
                kept = conn.execute("SELECT * FROM learn_examples WHERE decision_id = ?", (result.decision_id,)).fetchone()
                conn.close()
                assert kept is not None and kept[-1], "the escalation was not kept with its input"
                out["learn row"] = json.dumps(kept, default=str)
                out["learn spilled"] = next(line for line in learn_spill.splitlines() if result.decision_id in line)
        for i, request in enumerate(self.frontier.requests[sent:]):
            out[f"frontier request {i}"] = request.body
        if result.packet is not None:
            system, messages = result.packet.messages()
            out["packet.messages"] = system + json.dumps(messages, ensure_ascii=False)
            out["packet.to_dict"] = json.dumps(result.packet.to_dict())
        return out

    def close(self) -> dict[str, bytes]:
        """Close every log (SQLite checkpoints its WAL into the database) and return the files."""
        for log in (self.ok, self.failing, self.learn, self.learn_failing):
            log.close()
        return stored_bytes(self.folder)


def assert_no_leak(material, stored: dict[str, bytes | str]) -> None:
    found = {name: leaks(material, data) for name, data in stored.items()}
    assert {k: v for k, v in found.items() if v} == {}


log_text = st.lists(st.sampled_from(ROUTINE), max_size=6).map("\n".join)


log_text = st.lists(st.sampled_from(ROUTINE), max_size=6).map("\n".join)


@settings(max_examples=int(os.environ.get("SMALLFIRST_AUDIT_PROPERTY_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3), how=st.sampled_from(OBFUSCATIONS),
       seed=st.integers(0, 2**32), before=log_text, after=log_text, behaviour=st.sampled_from(BEHAVIOURS),
       task=st.sampled_from(("classify_issue", "summarize_log")), padding=st.sampled_from((0, 3000, 9000)))
def test_secrets_in_routed_text_never_reach_the_audit_the_learn_store_their_spill_files_or_the_packet(
        frontier, shapes, how, seed, before, after, behaviour, task, padding):
    rng = random.Random(seed)
    planted = [plant(s, rng) for s in shapes]
    lines = [before, *(obfuscate(p, how, rng) for p in planted), after]
    # Padding makes the input long enough for log compression to drop and cut lines before the
    # model sees it; the secrets sit at the start, in the middle and at the end.
    filler = "\n".join(rng.choice(ROUTINE) for _ in range(padding // 40))
    text = "\n".join([lines[0], lines[1], filler, *lines[2:]])
    material = tuple(m for p in planted for m in p.material)
    with tempfile.TemporaryDirectory() as tmp:
        stores = Stores(Path(tmp), frontier)
        assert_no_leak(material, stores.route(text, task, behaviour))
        assert_no_leak(material, stores.close())


def test_every_shape_routed_once_leaves_no_trace_in_any_stored_byte(tmp_path, frontier):
    stores = Stores(tmp_path, frontier)
    rng = random.Random(7)
    materials = []
    for i, shape in enumerate(SHAPES):
        p = plant(shape, rng)
        materials.extend(p.material)
        text = f"CI step {i}\n{p.text}\n[INFO] BUILD FAILURE"
        for task in ("classify_issue", "summarize_log"):
            assert_no_leak(p.material, stores.route(text, task, BEHAVIOURS[i % len(BEHAVIOURS)], whole_files=False))
    closed = stores.close()
    # The WALs are checkpointed away.
    assert set(closed) == {"audit.db", "failing.db.spill.jsonl", "learn.db", "failing-learn.db.spill.jsonl"}
    conn = sqlite3.connect(tmp_path / "learn.db")
    kept = conn.execute("SELECT COUNT(*), COUNT(label), COUNT(text) FROM learn_examples").fetchone()
    conn.close()
    assert kept[0] == kept[2] > 0 and 0 < kept[1] < kept[0]  # kept with their (masked) inputs; labelled or not
    assert_no_leak(tuple(materials), closed)
