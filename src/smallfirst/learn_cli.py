"""`smallfirst learn`: train a candidate head from kept escalations (run it from cron, or let the
service run it with `learn: {every: N}`), or show what is kept with `--status`.

Exit codes: 0 a candidate was handed over (candidate_head set, or promoted with
`learn: {promote: gate}`); 1 nothing changed: too little data, or the candidate failed the release
gate (the current head keeps serving); 2 bad input (policy, a corrupt head, no store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from smallfirst.paths import default_audit


def register(sub: Any, common: Callable[..., None]) -> None:
    sp = sub.add_parser("learn", help="train a candidate head from the frontier's answers to escalations; --status")
    common(sp, audit=False)
    sp.add_argument("--task", required=True)
    sp.add_argument("--audit", default=default_audit(), help="audit store, a SQLite file or a postgresql:// URL: "
                    "review labels are read from it, the run is recorded in its admin_events")
    sp.add_argument("--learn-db", default=os.environ.get("SMALLFIRST_LEARN_DB"),
                    help="learn store, a SQLite file or a postgresql:// URL (default: $SMALLFIRST_LEARN_DB, else the "
                    "audit's PostgreSQL database, or <audit>.learn.db beside a SQLite audit file)")
    sp.add_argument("--status", action="store_true", help="what is kept, and the last runs; changes nothing")
    sp.add_argument("--folds", type=int, default=5)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true", help="one JSON object (the last line of output)")
    sp.add_argument("--nice", type=int, default=0, help="lower this run's CPU priority by N (the service runs it with 10)")
    sp.set_defaults(func=cmd_learn)


def _fail(msg: str) -> int:
    print(f"smallfirst: {msg}", file=sys.stderr)
    return 2


def cmd_learn(args: argparse.Namespace) -> int:
    from smallfirst.learn import LearnError, run_learn, status
    from smallfirst.learn_store import LearnStore, learn_store_target
    from smallfirst.policy import load_policy
    from smallfirst.store import describe

    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)  # requests come first on a shared machine
    target = learn_store_target(args.audit, args.learn_db)
    try:
        store = LearnStore(target, create=False)
        if args.status:
            report = status(store, load_policy(args.policy), args.task)
            print(json.dumps(report, default=str) if args.json else format_status(report, describe(target)))
            return 0
        result = run_learn(args.policy, args.task, store, audit_path=args.audit, folds=args.folds, seed=args.seed,
                           command="smallfirst " + " ".join(sys.argv[1:]))
    except LearnError as exc:
        if args.json:
            print(json.dumps({"task": args.task, "outcome": "failed", "message": str(exc)}))
        return _fail(str(exc))
    except FileNotFoundError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"task": result.task, "outcome": result.outcome, "message": result.message,
                          "head": result.head, "run_id": result.run_id,
                          "held_back": result.report.get("held_back_report"), "bound": result.report.get("bound")},
                         default=str))
    else:
        print(format_result(result.report, result.outcome, result.message))
    return 0 if result.changed_policy else 1


def format_result(report: dict[str, Any], outcome: str, message: str) -> str:
    lines = [f"learn: {outcome}: {message}"]
    c = report.get("counts", {})
    if c:
        lines.append(f"  kept examples: {c.get('stored', 0)} stored, {c.get('usable', 0)} usable, "
                     f"{c.get('invalid_label', 0)} frontier answers that were not a label, {c.get('reviewed', 0)} "
                     f"reviewed, {c.get('purged', 0)} purged past retention")
    if "trained_on" in report:
        t = report["trained_on"]
        lines.append(f"  trained on {t['base']} base + {t['learned']} learned; held back the newest {report['held_back']}")
    if report.get("waiting"):
        lines.append(f"  labels with too few examples to train yet: {report['waiting']}")
    for name in ("held_back_report", "current_on_held_back", "base_out_of_fold_report"):
        r = report.get(name)
        if r:
            lines.append(f"  {name.replace('_', ' '):<24} n={r['n']:<5} local {_pct(r['local_rate'])}  accuracy on local "
                         f"{_pct(r['accuracy_on_local'])}  false accepts {r['false_accepts']}  novel {r['novel']}")
    b = report.get("bound")
    if b:
        lines.append(f"  false accepts among accepted: {b['false_accepts']}/{b['accepted']}, {b['confidence']:.0%} "
                     f"upper bound {b['upper_bound']:.4f} (limit {b['max_false_accept']})")
    return "\n".join(lines)


def format_status(s: dict[str, Any], store: str) -> str:
    c = s["counts"]
    learn = s["learn"] or {}
    lines = [
        f"learn {s['task']}: store {store}",
        f"  kept: {c['examples']} ({c['labelled']} with a label, {c['invalid_label']} frontier answers that were not "
        f"one of the task's labels, {c['without_embedding']} without an embedding, text kept for {c['with_text']})",
        "  by label: " + (", ".join(f"{k} {v}" for k, v in c["by_label"].items()) or "-"),
        f"  oldest {_when(c['oldest'])}, newest {_when(c['newest'])}; retention {learn.get('retention_days', '-')} days, "
        f"keep_inputs {learn.get('keep_inputs', '-')}",
        f"  labelled since the last run: {s['labelled_since_last_run']}"
        + (f" (runs every {learn['every']})" if learn.get("every") else ""),
        "  runs:" if s["runs"] else "  runs: none yet",
    ]
    for r in s["runs"]:
        hb = r.get("held_back") or {}
        nums = f" held back n={hb.get('n')} local {_pct(hb.get('local_rate'))} acc {_pct(hb.get('accuracy_on_local'))}" if hb else ""
        lines.append(f"    #{r['id']} {_when(r['ts'])} {r['outcome']:<15}{nums}  {r['message'][:140]}")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))
