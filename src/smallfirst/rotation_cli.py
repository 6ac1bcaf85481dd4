"""`smallfirst compare`, `smallfirst promote`, `smallfirst rollback` (model rotation).

promote exit codes: 0 promoted, 1 the candidate failed the release gate (nothing changed),
2 bad input. compare and rollback: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from smallfirst.policy import load_policy


def register(sub: Any, common: Callable[..., None]) -> None:
    sp = sub.add_parser("compare", help="decision diff of a task's model and its shadow candidate")
    common(sp)
    sp.add_argument("--task", required=True)
    sp.add_argument("--since", default="7d", help="window of shadow decisions, e.g. 24h, 7d (default 7d)")
    sp.add_argument("--data", help="labelled eval JSONL: also run both models on it and compare accuracy")
    sp.add_argument("--label-map", help="JSON object mapping the data's labels onto the task's")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("promote", help="make the task's candidate its model if it passes the release gate")
    common(sp, audit=False)
    sp.add_argument("--audit", help="audit store (SQLite file or postgresql:// URL): the promotion is recorded in its admin_events")
    sp.add_argument("--task", required=True)
    sp.add_argument("--data", required=True, help="eval JSONL the release gate runs on")
    sp.add_argument("--label-map", help="JSON object mapping the data's labels onto the task's")
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser("rollback", help="restore the model the last promote replaced")
    common(sp, audit=False)
    sp.add_argument("--audit", help="audit store (SQLite file or postgresql:// URL): the rollback is recorded in its admin_events")
    sp.add_argument("--task", required=True)
    sp.set_defaults(func=cmd_rollback)


def _fail(msg: str) -> int:
    print(f"smallfirst: {msg}", file=sys.stderr)
    return 2


def _seconds(window: str) -> float:
    m = re.fullmatch(r"(\d+)([hd])", window.strip())
    if not m:
        raise ValueError(f"--since {window!r}: use hours or days, e.g. 24h or 7d")
    return int(m.group(1)) * (3600 if m.group(2) == "h" else 86400)


def cmd_compare(args: argparse.Namespace) -> int:
    from smallfirst.rotation import RotationError, compare_audit
    from smallfirst.store import is_postgres

    policy = load_policy(args.policy)
    price = policy.prices.get("local")
    try:
        if args.data and not is_postgres(args.audit) and not Path(args.audit).exists():
            report: dict[str, Any] = {"n": 0}  # labelled data only: no shadow history to diff yet
        else:
            report = compare_audit(args.audit, args.task, since_s=_seconds(args.since),
                                   usd_per_hour=(price.usd_per_hour or 0.0) if price else 0.0)
    except (RotationError, ValueError) as exc:
        return _fail(str(exc))
    if args.data:
        try:
            report["labelled"] = _compare_on_data(policy, args)
        except (RotationError, ValueError) as exc:
            return _fail(str(exc))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    if args.data:
        _print_labelled(args.task, report["labelled"])
    print(f"compare {args.task}: {report['n']} shadow decisions with a candidate (last {args.since})")
    if not report["n"]:
        print(f"  none yet: set tasks.{args.task}.candidate and run the task in shadow mode")
        return 0
    print(f"  {'':<22} {'model':<28} {'local rate':>10} {'reviewed acc':>12} {'p50 ms':>8} {'cost $':>10}")
    for side in ("primary", "candidate"):
        print(
            f"  {side:<22} {str(report[f'{side}_model']):<28} {_pct(report['local_rate'][side]):>10} "
            f"{_pct(report['reviewed_accuracy'][side]):>12} {str(report['latency_ms_p50'][side]):>8} "
            f"{report['cost_usd'][side]:>10.6f}"
        )
    print(f"  agreement: route {_pct(report['route_agreement'])}, label {_pct(report['label_agreement'])}; "
          f"{report['reviewed']} reviewed")
    return 0


def _compare_on_data(policy: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Both models through the eval harness on labelled cases: the same router, policy and gate,
    only the task's model differs."""
    from smallfirst.evals import EvalDataError, read_cases
    from smallfirst.rotation import RotationError, eval_model, with_model
    from smallfirst.train import DataError, load_label_map

    spec = policy.tasks.get(args.task)
    if spec is None or not spec.candidate:
        raise RotationError(f"task {args.task!r} has no candidate to compare")
    try:
        cases = read_cases(Path(args.data), spec.labels, load_label_map(args.label_map) if args.label_map else None)
    except (EvalDataError, DataError) as exc:
        raise ValueError(str(exc)) from None
    out = {}
    for side, model, head in (("primary", spec.model, spec.head), ("candidate", spec.candidate, spec.candidate_head)):
        candidate_policy = with_model(policy, args.task, model, head)
        if side == "primary":  # the primary keeps the calibration fitted to its own scores
            t = candidate_policy.tasks[args.task].model_copy(update={"calibration": spec.calibration})
            candidate_policy = candidate_policy.model_copy(update={"tasks": {**candidate_policy.tasks, args.task: t}})
        r = eval_model(candidate_policy, args.task, cases)
        out[side] = {
            "model": model, "n": r["n"], "label_accuracy": r["label_accuracy"],
            "local_acceptance_rate": r["local_acceptance_rate"], "label_accuracy_accepted": r["label_accuracy_accepted"],
            "false_accepts": len(r["false_accepts"]), "latency_ms_local_p50": r["latency_ms"]["local"]["p50"],
            "cost_per_success_router": r["cost_per_success"]["router"], "gate_passed": r["gate"]["passed"],
        }
    return out


def _print_labelled(task: str, lab: dict[str, Any]) -> None:
    n = lab["primary"]["n"]
    print(f"compare {task} on {n} labelled cases (live pipeline, release gate per model):")
    print(f"  {'':<10} {'model':<22} {'accuracy':>9} {'local':>7} {'acc. local':>10} {'false acc.':>10} {'p50 ms':>8} {'$/success':>10} gate")
    for side in ("primary", "candidate"):
        s = lab[side]
        print(f"  {side:<10} {str(s['model']):<22} {_pct(s['label_accuracy']):>9} {_pct(s['local_acceptance_rate']):>7} "
              f"{_pct(s['label_accuracy_accepted']):>10} {s['false_accepts']:>10} {str(s['latency_ms_local_p50']):>8} "
              f"{str(s['cost_per_success_router']):>10} {'pass' if s['gate_passed'] else 'FAIL'}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def cmd_promote(args: argparse.Namespace) -> int:
    from smallfirst.evals import EvalDataError, format_text, read_cases
    from smallfirst.rotation import RotationError, promote
    from smallfirst.train import DataError, load_label_map

    try:
        before = load_policy(args.policy) if args.policy else None
        spec = before.tasks.get(args.task) if before else None
        labels = spec.labels if spec else []
        cases = read_cases(Path(args.data), labels, load_label_map(args.label_map) if args.label_map else None)
        promoted, report = promote(args.policy, args.task, cases)
    except (RotationError, EvalDataError, DataError) as exc:
        return _fail(str(exc))
    print(format_text(report))
    if not promoted:
        print(f"not promoted: the candidate failed the release gate; {args.policy} is unchanged")
        return 1
    after = load_policy(args.policy)
    print(f"promoted {after.tasks[args.task].model} for {args.task} in {args.policy} (previous kept as previous_model; .bak written)")
    _record(args, "promote", before, after)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from smallfirst.rotation import RotationError, rollback

    try:
        before = load_policy(args.policy) if args.policy else None
        rollback(args.policy, args.task)
    except RotationError as exc:
        return _fail(str(exc))
    after = load_policy(args.policy)
    print(f"rolled back {args.task} to {after.tasks[args.task].model} in {args.policy} (candidate: {after.tasks[args.task].candidate})")
    _record(args, "rollback", before, after)
    return 0


def _record(args: argparse.Namespace, action: str, before: Any, after: Any) -> None:
    if not args.audit:
        return
    from smallfirst.server.admin import record_admin_event

    record_admin_event(args.audit, {
        "ts": time.time(), "action": action, "allowed": True, "status": 0, "remote": "cli",
        "detail": {"task": args.task, "policy": args.policy, "model": after.tasks[args.task].model},
        "policy_before": before.version_tag if before else None, "policy_after": after.version_tag,
    })
