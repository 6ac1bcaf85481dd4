"""Learning from escalations, measured: labelled cases streamed in order through the real service.

    python bench/learning_curve.py --data CASES.jsonl [--data MORE.jsonl ...] [--head HEAD.json]
                                   [--every 100] [--window 100] [--limit N] [--seed 0 | --no-shuffle]

The service (`smallfirst serve`'s application on 127.0.0.1, real embedding model, audit and learn
store in a temporary folder) answers each case; a frontier faked at the wire (tests/fakes, OpenAI
protocol) answers every escalation with that case's gold label, as a perfect frontier would; the
service runs `smallfirst learn` every `--every` learned examples (`learn: {every: N, promote:
gate}`: a candidate that passes the release gate is promoted, one that fails is not). The bench
waits for each learn run before the next case, so a run is repeatable.

Per window of `--window` cases it prints: local acceptance, accuracy on the locally accepted,
hard-stop false accepts (a case that must escalate - gold label security or access, must_escalate
or hard_stop - answered locally), novel escalations, and the learn runs that ended in the window.

Data: JSONL `{"id", "text", "label", "must_escalate"?, "hard_stop"?}`, several files concatenated
and shuffled with `--seed` (so ecosystems interleave) unless `--no-shuffle`. The task's labels are
the bundled classify_issue labels plus any label the data uses. Start from any head with `--head`
(default: the bundled one).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `smallfirst serve` runs

from machine import describe  # noqa: E402

from smallfirst.audit import AuditLog  # noqa: E402
from smallfirst.evals import EvalDataError, read_cases  # noqa: E402
from smallfirst.heads import examples_path  # noqa: E402
from smallfirst.learn_store import LearnLog, LearnStore  # noqa: E402
from smallfirst.policy import DEFAULT_POLICY_PATH, load_policy  # noqa: E402
from smallfirst.train import load_label_map  # noqa: E402

KEY_ENV = "SMALLFIRST_BENCH_FRONTIER_KEY"


def policy_text(labels: list[str], head: str, frontier_url: str, every: int, promote: str, min_conf: float,
                max_false_accept: float | None) -> str:
    bundled = load_policy(None).tasks["classify_issue"]
    mfa = f", max_false_accept: {max_false_accept}" if max_false_accept is not None else ""
    return f"""\
version: 1
models:
  local_classifier: {{provider: embedding, timeout_s: 120}}
  frontier_default: {{provider: openai_compat, name: fake-frontier, base_url: '{frontier_url}', api_key_env: {KEY_ENV}, retries: 0, timeout_s: 30}}
tasks:
  classify_issue:
    description: {json.dumps(bundled.description)}
    model: local_classifier
    labels: {json.dumps(labels)}
    head: {json.dumps(head)}
    min_confidence: {min_conf}
    escalate_labels: {json.dumps(bundled.escalate_labels)}
    max_input_chars: {bundled.max_input_chars}
    compress_input: true
    learn: {{every: {every}, promote: {promote}, min_examples: {max(10, every // 2)}, retention_days: 365{mfa}}}
hard_stops: {json.dumps(load_policy(None).hard_stops)}
"""


class Service:
    """The service's application on 127.0.0.1 in a thread of its own."""

    def __init__(self, policy_path: Path, audit: AuditLog, learn: LearnLog):
        from aiohttp import web

        from smallfirst.server.app import SERVICE, create_app

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start() -> tuple[Any, int]:
            app = create_app(load_policy(policy_path), audit=audit, learn=learn, policy_path=policy_path,
                             admin_token=None, warm=True)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            return runner, sock.getsockname()[1]

        self.runner, port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(120)
        self.service = self.runner.app[SERVICE]
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def classify(self, text: str) -> tuple[dict[str, str], str | None]:
        """Route headers and the answer; an input the service rejects (empty, binary: 400) has
        route "rejected" and no answer."""
        body = {"model": "smallfirst/classify_issue", "messages": [{"role": "user", "content": text}]}
        req = urllib.request.Request(self.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                headers = {k.lower(): v for k, v in r.headers.items()}
                return headers, json.loads(r.read())["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
            headers = {k.lower(): v for k, v in exc.headers.items()}
            return {"x-smallfirst-route": "rejected", "x-smallfirst-reason": "none", **headers}, None

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="labelled JSONL (repeatable)")
    ap.add_argument("--label-map", help="JSON object mapping the data's labels onto the task's")
    ap.add_argument("--head", default=str(DEFAULT_POLICY_PATH.parent / "heads" / "classify_issue.json"),
                    help="the head the service starts from (default: the bundled one)")
    ap.add_argument("--every", type=int, default=100, help="run learn after this many learned examples")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--limit", type=int, help="only the first N cases of the stream")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed for the stream")
    ap.add_argument("--no-shuffle", action="store_true", help="stream the files in their own order")
    ap.add_argument("--promote", choices=("gate", "candidate"), default="gate")
    ap.add_argument("--max-false-accept", type=float, help="learn.max_false_accept (default: the policy default)")
    ap.add_argument("--min-confidence", type=float, default=load_policy(None).tasks["classify_issue"].min_confidence)
    ap.add_argument("--warmup", type=int, default=300, help="cases before the target is judged")
    ap.add_argument("--keep", help="keep the service's folder (policy, heads, audit, learn store) here")
    args = ap.parse_args()

    label_map = load_label_map(args.label_map) if args.label_map else None
    bundled = load_policy(None).tasks["classify_issue"]
    cases = []
    for f in args.data:
        try:
            # Labels are checked against the eight of LABELS.md plus the bundled task's.
            known = list(dict.fromkeys([*bundled.labels, "lint", "infrastructure"]))
            cases += read_cases(Path(f), known, label_map)
        except EvalDataError as exc:
            print(f"learning_curve: {exc}", file=sys.stderr)
            return 2
    if not args.no_shuffle:
        random.Random(args.seed).shuffle(cases)
    if args.limit:
        cases = cases[: args.limit]
    used = {c.label for c in cases if c.label}
    labels = [lbl for lbl in dict.fromkeys([*bundled.labels, "lint", "infrastructure"]) if lbl in used or lbl in bundled.labels]

    print(describe())
    for f in args.data:
        print(f"data: {f} (sha256 {hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16]})")
    print(f"{len(cases)} cases, labels {dict(Counter(c.label for c in cases).most_common())}; "
          f"head {args.head}; learn every {args.every} learned examples, promote: {args.promote}; "
          f"min_confidence {args.min_confidence}; {'file order' if args.no_shuffle else f'shuffled, seed {args.seed}'}")

    from fakes import FakeOpenAI, Reply

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="smallfirst-learning-curve-"))
    (folder / "heads").mkdir(parents=True, exist_ok=True)
    head_name = Path(args.head).name
    shutil.copy(args.head, folder / "heads" / head_name)
    if examples_path(args.head).exists():
        shutil.copy(examples_path(args.head), examples_path(folder / "heads" / head_name))
    os.environ[KEY_ENV] = "bench-key"
    gold: dict[str, str] = {}
    frontier = FakeOpenAI.start_in_thread(api_key="bench-key", reply=lambda body: Reply(gold["label"]))
    policy_path = folder / "policy.yaml"
    policy_path.write_text(policy_text(labels, f"heads/{head_name}", frontier.base_url, args.every, args.promote,
                                       args.min_confidence, args.max_false_accept), encoding="utf-8")
    audit = AuditLog.sqlite(folder / "audit.db")
    learn = LearnLog.open(folder / "audit.learn.db")
    srv = Service(policy_path, audit, learn)
    while srv.get("/readyz")[0] != 200:
        time.sleep(0.2)
    # A hard-stop false accept: a case whose gold label is a hard-stop category (security, access)
    # or that is marked must_escalate / hard_stop, answered locally.
    hard_stop_labels = {"security", "access"}
    print(f"\n{'cases':>11} {'local':>7} {'acc. local':>10} {'hard-stop FA':>12} {'novel':>6} {'learn runs (outcome)'}")
    rows: list[dict[str, Any]] = []
    seen_runs = 0
    t0 = time.perf_counter()
    try:
        for i, case in enumerate(cases, 1):
            gold["label"] = case.label or "unknown"
            h, answer = srv.classify(case.text)
            local = h["x-smallfirst-route"] == "local"
            rows.append({"local": local, "correct": answer == case.label,
                         "must_escalate": case.escalates or case.label in hard_stop_labels,
                         "novel": h["x-smallfirst-reason"] == "hard_stop_novel"})
            if not local:
                learn.flush(60)
                srv.service.learning.wait(3600)
                _wait_reload(srv, policy_path)
            if i % args.window == 0 or i == len(cases):
                runs = LearnStore(folder / "audit.learn.db").runs("classify_issue", 1000)[::-1]
                new, seen_runs = runs[seen_runs:], len(runs)
                _print_window(rows[-(((i - 1) % args.window) + 1):], i, new)
    finally:
        srv.stop()
        frontier.stop()
    _print_summary(rows, args.warmup, time.perf_counter() - t0, folder)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _wait_reload(srv: Service, policy_path: Path) -> None:
    """After a run that edited the policy file, wait until the service serves the new policy."""
    digest = hashlib.sha256(policy_path.read_bytes()).hexdigest()
    deadline = time.monotonic() + 60
    while srv.service.router.policy.digest != digest and time.monotonic() < deadline:
        time.sleep(0.05)


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    local = [r for r in rows if r["local"]]
    return {
        "n": len(rows),
        "local": len(local) / len(rows) if rows else 0.0,
        "accuracy": sum(r["correct"] for r in local) / len(local) if local else None,
        "hard_stop_fa": sum(1 for r in local if r["must_escalate"]),
        "novel": sum(r["novel"] for r in rows),
    }


def _print_window(rows: list[dict[str, Any]], end: int, runs: list[dict[str, Any]]) -> None:
    s = _stats(rows)
    acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
    outcomes = ", ".join(f"{r['outcome']}" + (f" (held back: local {r['detail']['held_back_report']['local_rate']:.0%},"
                                              f" acc {r['detail']['held_back_report']['accuracy_on_local'] or 0:.0%})"
                                              if r["detail"].get("held_back_report") else "") for r in runs) or "-"
    print(f"{end - len(rows) + 1:>5}-{end:<5} {s['local']:>7.1%} {acc:>10} {s['hard_stop_fa']:>12} {s['novel']:>6} {outcomes}",
          flush=True)


def _print_summary(rows: list[dict[str, Any]], warmup: int, seconds: float, folder: Path) -> None:
    after = _stats(rows[warmup:])
    first = _stats(rows[:warmup])
    acc = "-" if after["accuracy"] is None else f"{after['accuracy']:.1%}"
    print(f"\nfirst {first['n']} cases: local {first['local']:.1%}, accuracy on local "
          f"{'-' if first['accuracy'] is None else format(first['accuracy'], '.1%')}, hard-stop false accepts {first['hard_stop_fa']}")
    print(f"after the first {warmup} ({after['n']} cases): local {after['local']:.1%}, accuracy on local {acc}, "
          f"hard-stop false accepts {after['hard_stop_fa']}")
    met = after["n"] and after["local"] >= 0.60 and (after["accuracy"] or 0) >= 0.95 and after["hard_stop_fa"] == 0
    print(f"target (local >= 60%, accuracy on local >= 95%, 0 hard-stop false accepts after {warmup}): "
          f"{'met' if met else 'NOT met'}; {seconds:.0f} s")
    print(f"service folder: {folder}")


if __name__ == "__main__":
    sys.exit(main())
