"""The `smallfirst` command.

Exit codes: 0 done (whether the task stayed local or escalated), 1 the frontier failed,
2 bad input (policy, data, arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

from smallfirst.paths import DEFAULT_AUDIT, default_audit
from smallfirst.policy import Policy, PolicyError, load_policy
from smallfirst.telemetry import TelemetryError

DEMO_LOGS = Path(str(files("smallfirst") / "data" / "demo" / "ci_logs.jsonl"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from smallfirst.store import StoreError

    try:
        return int(args.func(args) or 0)
    except PolicyError as exc:
        print(f"smallfirst: policy error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"smallfirst: {exc}", file=sys.stderr)
        return 2
    except TelemetryError as exc:
        print(f"smallfirst: telemetry: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `smallfirst audit tail | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smallfirst", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, audit: bool = True) -> None:
        sp.add_argument("--policy", help="policy file (default: the bundled policy)")
        if audit:
            sp.add_argument(
                "--audit",
                default=default_audit(),
                help=f"audit store: a SQLite file or a postgresql:// URL (default: $SMALLFIRST_AUDIT or ./{DEFAULT_AUDIT})",
            )

    sp = sub.add_parser("demo", help="nightly build-failure triage over bundled real CI logs, offline")
    common(sp)
    sp.add_argument("--json", action="store_true", help="one JSON object per log instead of a table")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("route", help="route one input and print the decision as JSON")
    common(sp)
    sp.add_argument("--task", required=True, help="task type from the policy")
    sp.add_argument("--group", default="default", help="user group (rollout)")
    sp.add_argument("--task-id", help="caller's id for this step, recorded in the audit")
    sp.add_argument("file", nargs="?", default="-", help="input file, or - for standard input")
    sp.set_defaults(func=cmd_route)

    sp = sub.add_parser("doctor", help="check bundled models, hashes, licences and frontier config")
    common(sp, audit=False)
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("audit", help="read the audit trail")
    asub = sp.add_subparsers(metavar="ACTION")
    tp = asub.add_parser("tail", help="most recent decisions")
    tp.add_argument("--audit", default=default_audit(), help="audit store: a SQLite file or a postgresql:// URL")
    tp.add_argument("-n", "--limit", type=int, default=20)
    tp.add_argument("--task", help="only this task type")
    tp.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    tp.set_defaults(func=cmd_audit_tail)

    sp = sub.add_parser("train", help="fit a classifier head for a task on labelled JSONL")
    common(sp, audit=False)
    sp.add_argument("--task", required=True)
    sp.add_argument("--data", required=True, action="append",
                    help="JSONL with id, text, label (repeat to train on several files)")
    sp.add_argument("--label-map", help="JSON object mapping the data's labels onto the task's")
    sp.add_argument("--exclude", help="JSONL whose ids are held out of training (e.g. the demo set)")
    sp.add_argument("--out", help="where to write the head (default: heads/<task>.json beside the policy)")
    sp.add_argument("--folds", type=int, default=5)
    sp.add_argument(
        "--window", choices=("first", "last", "mean"), default="last",
        help="which 256-token window of a long text the classifier reads: last suits logs "
        "(failures are at the end), first suits issues and tickets (the title leads)",
    )
    sp.add_argument(
        "--features", choices=("auto", "words", "embedding"), default="auto",
        help="words: the text's words beside its embedding (lexical.py); auto: words for a task whose "
        "inputs are logs (compress_input), the embedding alone otherwise",
    )
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("serve", help="serve the OpenAI- and Anthropic-compatible HTTP API")
    common(sp)
    sp.add_argument("--learn-db", default=os.environ.get("SMALLFIRST_LEARN_DB"),
                    help="learn store for tasks with learn:, a SQLite file or a postgresql:// URL (default: "
                    "$SMALLFIRST_LEARN_DB, else the audit's PostgreSQL database, or <audit>.learn.db beside a SQLite audit)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8787)
    sp.add_argument("--spill", default=os.environ.get("SMALLFIRST_SPILL"),
                    help="where decisions wait while the store is unreachable (default: beside a SQLite "
                    "file; ./smallfirst-audit.spill.jsonl for PostgreSQL; $SMALLFIRST_SPILL)")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("migrate", help="create or upgrade the audit store's tables (idempotent)")
    sp.add_argument("--audit", default=default_audit(), help="audit store: a SQLite file or a postgresql:// URL")
    sp.set_defaults(func=cmd_migrate)

    sp = sub.add_parser("dashboard", help="serve the operator dashboard over an audit store")
    sp.add_argument("--audit", required=True, help="audit store: a SQLite file or a postgresql:// URL")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8788)
    sp.set_defaults(func=cmd_dashboard)

    sp = sub.add_parser("policy", help="validate a policy file")
    psub = sp.add_subparsers(metavar="ACTION")
    cp = psub.add_parser("check", help="validate; prints every problem as file:line: field: problem, exits 2")
    cp.add_argument("file", nargs="?")
    cp.set_defaults(func=cmd_policy_check)

    from smallfirst.evals_cli import register

    register(sub, common)
    from smallfirst.review_cli import register as register_review; register_review(sub, common)  # noqa: E702
    from smallfirst.rotation_cli import register as register_rotation; register_rotation(sub, common)  # noqa: E702
    from smallfirst.learn_cli import register as register_learn; register_learn(sub, common)  # noqa: E702
    return p


# ---------------------------------------------------------------------------- commands


def _router(policy: Policy, audit_path: str | None):
    from smallfirst.audit import AuditLog
    from smallfirst.router import Router

    audit = AuditLog.open(audit_path) if audit_path else None
    return Router(policy, audit=audit), audit


def cmd_route(args: argparse.Namespace) -> int:
    from smallfirst.router import InputRejected
    from smallfirst.tasks import Task

    policy = load_policy(args.policy)
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"smallfirst: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    router, audit = _router(policy, args.audit)
    try:
        result = router.route(Task(input=raw, task_type=args.task, task_id=args.task_id, user_group=args.group))
    except InputRejected as exc:
        print(f"smallfirst: {exc}", file=sys.stderr)
        if exc.result is not None:
            print(json.dumps(exc.result.to_dict(), indent=2))
        return 2
    finally:
        router.close()
        if audit:
            audit.close()
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    return 1 if result.outcome == "frontier_error" else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from smallfirst.tasks import Task

    policy = load_policy(args.policy)
    task_type = "classify_issue"
    logs = [json.loads(line) for line in DEMO_LOGS.read_text(encoding="utf-8").splitlines() if line.strip()]
    router, audit = _router(policy, args.audit)
    if not args.json:
        print(f"smallfirst demo: nightly build-failure triage, {len(logs)} real CI logs (BUMP, MIT), task {task_type}")
        print(f"policy {policy.source} ({policy.version_tag}); audit {args.audit}")
    t = time.perf_counter()
    warm = router.warm([task_type])
    if not args.json:
        for key, err in warm.items():
            print(f"model {key}: " + (f"FAILED to load: {err}" if err else f"loaded in {time.perf_counter() - t:.1f}s"))
        print()
        print(f"{'log':<20} {'task':<15} {'route':<8} {'reason':<22} {'label':<11} {'conf':>5} {'ms':>7}  gold (BUMP)")
    results = []
    try:
        for row in logs:
            r = router.route(Task(input=row["text"], task_type=task_type, task_id=row["id"], user_group="nightly"))
            results.append((row, r))
            if args.json:
                print(json.dumps({"log": row["id"], "gold": row["label"], **r.to_dict(), "packet": None}))
            else:
                conf = "" if r.confidence is None else f"{r.confidence:.2f}"
                print(
                    f"{row['id']:<20} {task_type:<15} {r.route:<8} {(r.reason.value if r.reason else '-'):<22} "
                    f"{(r.label or '-'):<11} {conf:>5} {r.latency_ms:>7.1f}  {row['label']}"
                )
    finally:
        router.close()
        if audit:
            audit.close()
    if not args.json:
        _demo_summary(results, policy)
    return 0


def _demo_summary(results: list[tuple[dict[str, Any], Any]], policy: Policy) -> None:
    from collections import Counter

    n = len(results)
    local = [r for _, r in results if r.route == "local"]
    reasons = Counter(r.reason.value for _, r in results if r.reason)
    frontier_only = sum(r.frontier_only_cost_usd for _, r in results)
    # With no frontier configured the escalations were not sent; count them at what the frontier
    # would have charged, so the comparison is what a live deployment would pay.
    router_cost = sum(r.cost_usd for _, r in results) + sum(
        r.frontier_only_cost_usd for _, r in results if r.route != "local" and r.frontier is None
    )
    fs = policy.frontier_spec(None)
    print()
    print(f"local acceptance: {len(local)}/{n} = {len(local) / n:.0%}")
    print("escalations by reason: " + (", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "none"))
    lat = sorted(r.latency_ms for _, r in results)
    print(f"latency per log: p50 {lat[n // 2]:.1f} ms, max {lat[-1]:.1f} ms")
    name = fs[1].display_name if fs else "frontier"
    local_price = policy.prices.get("local")
    per_hour = local_price.usd_per_hour if local_price and local_price.usd_per_hour else 0.0
    saved = 1 - router_cost / frontier_only if frontier_only else 0.0
    print(
        f"estimated cost: router ${router_cost:.4f} vs everything to {name} ${frontier_only:.4f} "
        f"({saved:.0%} less; local machine time at ${per_hour}/h, "
        f"frontier tokens estimated at 4 chars/token)"
    )
    if any(r.outcome == "no_frontier" for _, r in results):
        print("frontier: not configured (set ANTHROPIC_API_KEY); escalations were recorded with their packets, not sent")


def cmd_doctor(args: argparse.Namespace) -> int:
    from smallfirst.doctor import run_doctor

    return run_doctor(args.policy)


def cmd_audit_tail(args: argparse.Namespace) -> int:
    from smallfirst.audit import read_recent

    try:
        rows = read_recent(args.audit, args.limit, args.task)
    except (FileNotFoundError, OSError) as exc:
        print(f"smallfirst: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return 0
    print(f"{'time (UTC)':<19} {'decision':<14} {'task':<18} {'route':<8} {'reason':<22} {'label':<10} {'conf':>5} {'ms':>7}  preview")
    for r in rows:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"]))
        conf = "" if r["confidence_calibrated"] is None else f"{r['confidence_calibrated']:.2f}"
        prev = (r["preview"] or "").replace("\n", " ")[:40]
        print(
            f"{ts:<19} {r['decision_id'][:12]:<14} {(r['task_type'] or '-'):<18} {r['route']:<8} "
            f"{(r['reason'] or '-'):<22} {(r['label'] or '-'):<10} {conf:>5} {r['latency_ms']['total']:>7.1f}  {prev}"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from smallfirst.train import DataError, train_head

    policy = load_policy(args.policy) if args.policy else _policy_for_training()
    spec = policy.tasks.get(args.task)
    if spec is None:
        print(f"smallfirst: unknown task {args.task!r}; the policy has {sorted(policy.tasks)}", file=sys.stderr)
        return 2
    label_map = None
    if args.label_map:
        try:
            label_map = {k: v for k, v in json.loads(Path(args.label_map).read_text()).items() if not k.startswith("_")}
        except (OSError, ValueError) as exc:
            print(f"smallfirst: cannot read label map {args.label_map}: {exc}", file=sys.stderr)
            return 2
    exclude: set[str] = set()
    if args.exclude:
        exclude = {json.loads(line)["id"] for line in Path(args.exclude).read_text().splitlines() if line.strip()}
    out = Path(args.out) if args.out else policy.base_dir() / "heads" / f"{args.task}.json"
    command = "smallfirst " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("smallfirst") else None
    try:
        from smallfirst.backends.embedding import Window
        from smallfirst.hardstops import HardStops

        report = train_head(
            spec, [Path(d) for d in args.data], out, label_map=label_map, folds=args.folds,
            exclude_ids=exclude, command=command, window=Window(args.window),
            words=None if args.features == "auto" else args.features == "words",
            hard_stops=HardStops.from_policy(policy),
        )
    except DataError as exc:
        print(f"smallfirst: {exc}", file=sys.stderr)
        return 2
    print(report.summary() if hasattr(report, "summary") else report)
    print(f"wrote {out}")
    return 0


def _policy_for_training() -> Policy:
    """The bundled policy, readable even before its trained head exists (the head is what
    `train` is about to write)."""
    from smallfirst.policy import DEFAULT_POLICY_PATH, parse_policy

    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    try:
        return parse_policy(text, source=str(DEFAULT_POLICY_PATH))
    except PolicyError as exc:
        if exc.field.endswith(".head"):
            import re

            return parse_policy(re.sub(r"(?m)^\s*head:.*\n", "", text), source=str(DEFAULT_POLICY_PATH))
        raise


def cmd_serve(args: argparse.Namespace) -> int:
    # One BLAS thread per model call: the service gets its parallelism from concurrent requests,
    # and two BLAS threads per call on a busy 2-core box thrashed (median 1.2 s vs 0.15 s per
    # classification, measured). Must be set before numpy loads; an operator's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from smallfirst.server.app import serve

    serve(args.policy, args.audit, args.host, args.port, spill_path=args.spill, learn_path=args.learn_db)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from smallfirst.schema import LATEST, migrate
    from smallfirst.store import connect_postgres, connect_sqlite_for_writing, describe, is_postgres

    try:
        conn = connect_postgres(args.audit) if is_postgres(args.audit) else connect_sqlite_for_writing(args.audit)
    except Exception as exc:  # the driver's own message says what is wrong (host, auth, database)
        print(f"smallfirst: cannot open the store {describe(args.audit)}: {str(exc).strip()}", file=sys.stderr)
        return 2
    try:
        before, after = migrate(conn)
    finally:
        conn.close()
    what = "already at" if before == after else f"migrated from schema version {before} to"
    print(f"{describe(args.audit)}: {what} schema version {after} (latest {LATEST})")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from smallfirst.server.access import Access, is_loopback
    from smallfirst.server.app import run
    from smallfirst.server.dashboard_routes import create_dashboard_app

    access = Access.from_env(exposed=not is_loopback(args.host))
    if not access.dashboard_served:
        print(f"smallfirst: refusing to serve the dashboard on {args.host}: beyond loopback it needs "
              "SMALLFIRST_READ_TOKEN or SMALLFIRST_ADMIN_TOKEN (or serve it on 127.0.0.1)", file=sys.stderr)
        return 2
    note = "" if Path(args.audit).exists() else " (does not exist yet: an empty dashboard until the first decision)"
    print(f"smallfirst dashboard: http://{args.host}:{args.port}/dashboard  audit {args.audit}{note}; "
          f"{access.describe()}", flush=True)
    run(create_dashboard_app(args.audit, exposed=access.exposed), args.host, args.port)
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        for err in exc.errors:  # every problem, in file order: file:line: field: problem
            print(err.location, file=sys.stderr)
        n = len(exc.errors)
        print(f"smallfirst: {n} error{'s' if n != 1 else ''} in {exc.file}", file=sys.stderr)
        return 2
    print(f"{policy.source}: ok ({policy.version_tag}, {len(policy.tasks)} tasks, {len(policy.models)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
