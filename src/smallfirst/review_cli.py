"""`smallfirst shadow-report` and `smallfirst review`.

Exit codes: 0 done, 2 bad input (missing audit file, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, TextIO

from smallfirst.paths import default_audit

EXPORT_NOTE = (
    "the audit keeps no raw input, so exported cases carry input_sha256 (SHA-256 of the UTF-8 input text) "
    "for joining with your own inputs; pass --inputs to add \"text\" so `smallfirst eval` can run them"
)


def register(sub: Any, common: Callable[..., None]) -> None:
    sp = sub.add_parser("shadow-report", help="what live routing would have done, from shadow decisions")
    common(sp)
    sp.add_argument("--since", default="7d", help="window: 7d, 24h, 30m, 2w (default 7d)")
    sp.add_argument("--json", action="store_true", help="the report as one JSON object")
    sp.set_defaults(func=cmd_shadow_report)

    sp = sub.add_parser(
        "review",
        help="label sampled decisions accept | escalate | the right label in the terminal; --sample-drift, --export",
        description="Label decisions (answers read from standard input: a, e, 'l LABEL' for the right task label, "
        "s, q), queue a weekly drift sample, or export reviewed decisions as eval JSONL. Export: " + EXPORT_NOTE + ".",
    )
    common(sp, audit=False)
    sp.add_argument("--audit", default=default_audit(), help="audit store: a SQLite file or a postgresql:// URL")
    sp.add_argument("--task", help="only this task type")
    sp.add_argument("--n", type=int, default=20, help="decisions to review in this session")
    sp.add_argument("--reviewer", help="name recorded with each label")
    sp.add_argument("--sample-drift", action="store_true", help="queue this week's random sample of local accepts per task")
    sp.add_argument("--per-task", type=int, default=20, help="drift sample size per task type")
    sp.add_argument("--seed", type=int, help="random seed for the drift sample")
    sp.add_argument("--export", metavar="FILE.jsonl", help="write reviewed decisions as eval JSONL")
    sp.add_argument("--inputs", metavar="DIR_OR_JSONL", help='with --export: your inputs (JSONL with "text", or a folder of files), joined by SHA-256')
    sp.set_defaults(func=cmd_review)


def _fail(msg: str) -> int:
    print(f"smallfirst: {msg}", file=sys.stderr)
    return 2


def cmd_shadow_report(args: argparse.Namespace) -> int:
    from smallfirst.policy import load_policy
    from smallfirst.shadow import format_report, parse_since, shadow_report

    try:
        since_s = parse_since(args.since)
    except ValueError as exc:
        return _fail(str(exc))
    price = load_policy(args.policy).prices.get("local")
    usd_per_hour = price.usd_per_hour if price and price.usd_per_hour else 0.0
    try:
        report = shadow_report(args.audit, since_s, usd_per_hour)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"shadow decisions in the last {args.since} ({args.audit}); local machine time at ${usd_per_hour}/h")
        print(format_report(report))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from smallfirst import review

    try:
        if args.sample_drift:
            queued = review.sample_drift(args.audit, per_task=args.per_task, seed=args.seed)
            for task, k in queued.items():
                print(f"{task}: queued {k} for drift review")
            if not queued:
                print("nothing queued (no local accepts in the last 7 days, or this week's sample is already queued)")
            return 0
        if args.export:
            return _export(args, review)
        return review_session(args.audit, args.task, args.n, args.reviewer, sys.stdin, sys.stdout,
                              labels_of=_task_labels(args.policy))
    except FileNotFoundError as exc:
        return _fail(str(exc))


def _task_labels(policy_path: str | None) -> Callable[[str | None], list[str]]:
    from smallfirst.policy import load_policy

    policy = load_policy(policy_path)
    return lambda task: list(policy.tasks[task].labels) if task in policy.tasks else []


def _export(args: argparse.Namespace, review: Any) -> int:
    texts = None
    if args.inputs:
        try:
            texts = review.load_inputs(args.inputs)
        except (OSError, ValueError) as exc:
            return _fail(f"--inputs: {exc}")
    rows = review.reviewed(args.audit, args.task)
    cases = review.eval_rows(rows, texts)
    with open(args.export, "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} reviewed decisions to {args.export}")
    if texts is None:
        print(f"note: {EXPORT_NOTE}")
    elif len(cases) < len(rows):
        print(f"note: {len(rows) - len(cases)} reviewed decisions left out: their input was not in {args.inputs}")
    return 0


def _show(d: dict[str, Any]) -> str:
    checks = d.get("checks") or []
    failed = [f"{c['name']}: {c.get('detail') or 'failed'}" for c in checks if not c.get("ok")]
    summary = f"{len(checks) - len(failed)}/{len(checks)} ok" + (f"; failed {'; '.join(failed)}" if failed else "")
    hs = d.get("hard_stop")
    conf = d.get("confidence_calibrated")
    hs_text = f"{hs.get('category')} ({hs.get('rule')})" if hs else "-"
    agree = {1: "agrees", 0: "DISAGREES", None: "-"}[d.get("shadow_agree")]
    lines = [
        f"decision {d['decision_id']}" + (f"  (queued: {d['queued_reason']})" if d.get("queued_reason") else ""),
        f"  task {d['task_type'] or '-'}  mode {d['mode']}  route {d['route']}  candidate {d['route_candidate'] or '-'}",
        f"  reason {d['reason'] or '-'}  label {d['label'] or '-'}  confidence {'-' if conf is None else f'{conf:.2f}'}"
        f"  frontier {agree}",
        f"  checks {summary}",
        f"  hard stop {hs_text}",
        "  preview (masked):",
        *("    " + line for line in (d.get("preview") or "").splitlines()[:8]),
    ]
    return "\n".join(lines)


def review_session(
    db_path: str, task: str | None, n: int, reviewer: str | None, stdin: TextIO, stdout: TextIO,
    labels_of: Callable[[str | None], list[str]] | None = None,
) -> int:
    """One labelling session. Answers come one a line from `stdin`, so it works piped as well as
    at a terminal; end of input quits. `l LABEL` names the right task label (checked against the
    task's labels from `labels_of`); it implies accept or escalate (smallfirst.review)."""
    from smallfirst.review import next_for_review, set_review_label

    items = next_for_review(db_path, task, n)
    if not items:
        print("nothing to review", file=stdout)
        return 0
    counts = {"accept": 0, "escalate": 0, "label": 0, "skip": 0}
    for i, d in enumerate(items, 1):
        print(f"\n[{i}/{len(items)}] " + _show(d), file=stdout)
        labels = labels_of(d["task_type"]) if labels_of is not None else []
        gold = None
        while True:
            hint = f" / label [l {'|'.join(labels)}]" if labels else " / label [l NAME]"
            print(f"accept / escalate{hint} / skip / quit [a/e/l/s/q]: ", end="", file=stdout, flush=True)
            line = stdin.readline()
            words = line.strip().split() if line else ["q"]
            answer = words[0].lower()[:1] if words else ""
            if answer == "l" and len(words) == 2 and (not labels or words[1] in labels):
                gold = words[1]
                break
            if answer in ("a", "e", "s", "q") and len(words) == 1:
                break
            print(f"  please answer a, e, s, q or l followed by one of {labels or 'the task labels'}", file=stdout)
        if answer == "q":
            break
        if answer == "s":
            counts["skip"] += 1
            continue
        if gold is not None:
            set_review_label(db_path, d["decision_id"], None, reviewer, gold=gold)
            counts["label"] += 1
            continue
        label = "accept" if answer == "a" else "escalate"
        set_review_label(db_path, d["decision_id"], label, reviewer)  # type: ignore[arg-type]
        counts[label] += 1
    print(f"\nreviewed: {counts['accept']} accept, {counts['escalate']} escalate, {counts['label']} labelled, "
          f"{counts['skip']} skipped", file=stdout)
    return 0
