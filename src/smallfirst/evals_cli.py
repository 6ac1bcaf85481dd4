"""`smallfirst eval` and `smallfirst calibrate`.

eval exit codes: 0 the release gate passes, 1 it fails, 2 bad input.
calibrate exit codes: 0 a threshold meets the bound, 1 none does (keep the task on the frontier),
2 bad input.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from smallfirst.policy import load_policy


def register(sub: Any, common: Callable[..., None]) -> None:
    sp = sub.add_parser("eval", help="run labelled cases through the router and check the release gate")
    common(sp, audit=False)
    sp.add_argument("--audit", help="audit store, a SQLite file or a postgresql:// URL (default: a temporary file)")
    sp.add_argument("--task", required=True)
    sp.add_argument("--data", required=True, help='JSONL: {"id","text","label"?,"must_escalate"?,"hard_stop"?}')
    sp.add_argument("--label-map", help="JSON object mapping the data's labels onto the task's")
    sp.add_argument("--report", help="write the JSON report here")
    sp.add_argument("--html", help="write an HTML report here (reliability diagram as inline SVG)")
    sp.add_argument("--limit", type=int, help="only the first N cases")
    sp.add_argument("--group", default="default", help="user group the cases are routed as")
    sp.add_argument("--by", metavar="FIELD", help="also break the numbers down by this field of the data rows (e.g. ecosystem)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("calibrate", help="fit a calibrator and a threshold with a false-accept bound")
    common(sp, audit=False)
    sp.add_argument("--task", required=True)
    sp.add_argument("--data", required=True, help="labelled JSONL the local model was not trained on (or the head's own training file)")
    sp.add_argument("--label-map")
    sp.add_argument("--max-false-accept", type=float, default=0.01, help="bound on false accepts among accepted cases")
    sp.add_argument("--confidence", type=float, default=0.95, help="confidence level of the bound")
    sp.add_argument("--out", help="where to write it (default: calibration/<task>.json beside the policy)")
    sp.add_argument("--folds", type=int, default=5)
    sp.set_defaults(func=cmd_calibrate)


def _fail(msg: str) -> int:
    print(f"smallfirst: {msg}", file=sys.stderr)
    return 2


def _label_map(path: str | None) -> dict[str, str] | None:
    if not path:
        return None
    from smallfirst.train import load_label_map

    return load_label_map(path)


def _progress(label: str) -> Callable[[int, int], None]:
    tty = sys.stderr.isatty()

    def show(i: int, n: int) -> None:
        if tty:
            print(f"\r{label} {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
        elif i == n or i % 50 == 0:
            print(f"{label} {i}/{n}", file=sys.stderr, flush=True)

    return show


def cmd_eval(args: argparse.Namespace) -> int:
    from smallfirst.audit import AuditLog
    from smallfirst.evals import EvalDataError, build_report, check_kill_switch, format_html, format_text, read_cases, run_eval
    from smallfirst.router import Router
    from smallfirst.train import DataError

    policy = load_policy(args.policy)
    spec = policy.tasks.get(args.task)
    if spec is None:
        return _fail(f"unknown task {args.task!r}; the policy has {sorted(policy.tasks)}")
    try:
        cases = read_cases(Path(args.data), spec.labels, _label_map(args.label_map))
    except (EvalDataError, DataError) as exc:
        return _fail(str(exc))
    if args.limit:
        cases = cases[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog.open(args.audit or Path(tmp) / "eval-audit.db")
        router = Router(policy, audit=audit)
        try:
            router.warm([args.task])
            results = run_eval(router, args.task, cases, group=args.group, progress=_progress(f"eval {args.task}"))
        finally:
            router.close()
            audit.close()
    report = build_report(results, spec, check_kill_switch(policy, args.task, cases[0].text))
    report["data"] = {"file": args.data, "label_map": args.label_map, "policy": policy.source, "policy_version": policy.version_tag}
    if args.by:
        from smallfirst.evals import breakdown, format_breakdown
        from smallfirst.jsonl import read_jsonl

        group_of = {str(row.get("id")): row.get(args.by) for _, row in read_jsonl(Path(args.data), EvalDataError, "evaluation data")}
        report["by"] = {"field": args.by, "groups": breakdown(results, group_of)}
    print(format_text(report))
    if args.by:
        print(f"  by {args.by}:\n" + format_breakdown(args.by, report["by"]["groups"]))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.html:
        Path(args.html).write_text(format_html(report), encoding="utf-8")
    return 0 if report["gate"]["passed"] else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    from smallfirst.calibration import CALIBRATION_FORMAT
    from smallfirst.evals import EvalDataError, calibrate_task, data_sha256, raw_scores, read_cases
    from smallfirst.train import DataError

    if not 0 < args.max_false_accept < 1 or not 0 < args.confidence < 1:
        return _fail("--max-false-accept and --confidence must be between 0 and 1")
    policy = load_policy(args.policy)
    spec = policy.tasks.get(args.task)
    if spec is None:
        return _fail(f"unknown task {args.task!r}; the policy has {sorted(policy.tasks)}")
    if not spec.labels or not spec.local:
        return _fail(f"task {args.task!r}: calibrate needs a local task with labels (correctness is judged by label)")
    data = Path(args.data)
    try:
        cases = read_cases(data, spec.labels, _label_map(args.label_map))
        missing = next((c for c in cases if c.label is None and not c.escalates), None)
        if missing is not None:
            return _fail(f"{data}:{missing.line}: calibration needs a label (or must_escalate) on every case")
        digest = data_sha256(data)
        scores = raw_scores(policy, spec, cases, digest, folds=args.folds)
    except (EvalDataError, DataError) as exc:
        return _fail(str(exc))
    cal, choice, kind = calibrate_task(scores, max_false_accept=args.max_false_accept, confidence_level=args.confidence)
    local = choice.threshold is not None
    doc = {
        "format": CALIBRATION_FORMAT,
        "task": args.task,
        "local": local,
        "threshold": choice.threshold,
        "calibrator": cal.to_dict(),
        "bound": {
            "max_false_accept": args.max_false_accept,
            "confidence": args.confidence,
            "upper_bound": None if choice.upper_bound is None else round(choice.upper_bound, 6),
            "accepted": choice.accepted,
            "false_accepts": choice.false_accepts,
            "acceptance_rate": round(choice.accepted / choice.n, 4) if choice.n else 0.0,
            "rate": "false accepts among accepted cases (wrong label, or a case that must escalate)",
        },
        "method": {
            "calibrator": f"{kind}, chosen by held-out log loss among platt, isotonic, temperature",
            "bound": "Clopper-Pearson one-sided upper bound",
            "multiplicity": "Learn-then-Test, fixed-sequence testing from high to low threshold, stop at first failure",
            "scores": scores.source,
        },
        "provenance": {
            "data_file": str(data),
            "data_sha256": digest,
            "n": len(cases),
            "label_map": args.label_map,
            "policy": policy.source,
            "policy_version": policy.version_tag,
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "command": "smallfirst " + shlex.join(sys.argv[1:]),
        },
    }
    out = Path(args.out) if args.out else policy.base_dir() / "calibration" / f"{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"calibrate {args.task}: {len(cases)} cases; scores: {scores.source}")
    print(f"  calibrator {kind}; bound: false accepts among accepted <= {args.max_false_accept} at {args.confidence:.0%}")
    if local:
        print(
            f"  threshold {choice.threshold:.4f}: local {choice.accepted}/{choice.n} ({choice.accepted / choice.n:.1%}), "
            f"false accepts {choice.false_accepts}, upper bound {choice.upper_bound:.4f}"
        )
        print(f"wrote {out}; reference it from the policy: tasks.{args.task}.calibration: {out}")
        return 0
    ub = "n/a (too few eligible cases)" if choice.upper_bound is None else f"{choice.upper_bound:.4f}"
    print(f"  NO threshold meets the bound (best upper bound {ub}); keep {args.task} on the frontier (local: false)")
    print(f"wrote {out} (local: false)")
    return 1
