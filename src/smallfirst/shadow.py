"""Shadow mode: does the local answer agree with the frontier's, and what would live have done?

`agreement()` is computed by the router for every shadow decision where both a local and a
frontier answer exist; it is stored as `decisions.shadow_agree` (1/0, NULL otherwise).
`shadow_report()` reads the shadow decisions of a window back, every number computed in SQL
(the same on SQLite and PostgreSQL).

Agreement, by task kind (deliberately simple, so an operator can predict it):
    classify  the frontier names the local label: its answer starts with the label as a word, or
              the local label is the only one of the task's labels it mentions (whole words,
              case-insensitive). A frontier answer naming no label disagrees.
    json      both answers parse as JSON objects (a frontier answer may be fenced in ```), they
              share at least one key, and every shared key has the same value.
    text      Jaccard overlap of the lower-cased word sets >= TEXT_AGREE_JACCARD.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Literal

from smallfirst.audit import open_readonly
from smallfirst.store import Dialect, dialect_of

TEXT_AGREE_JACCARD = 0.5
_WORD = re.compile(r"[a-z0-9_]+")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def agreement(
    kind: Literal["classify", "json", "text"],
    labels: list[str],
    local_answer: str,
    local_label: str | None,
    frontier_text: str,
) -> bool:
    if kind == "classify":
        return _labels_agree(labels, local_label, frontier_text)
    if kind == "json":
        return _json_agree(local_answer, frontier_text)
    return _jaccard(_words(local_answer), _words(frontier_text)) >= TEXT_AGREE_JACCARD


def _words(s: str) -> set[str]:
    return set(_WORD.findall(s.lower()))


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _labels_agree(labels: list[str], local_label: str | None, frontier_text: str) -> bool:
    if not local_label:
        return False
    text = frontier_text.lower()

    def names(label: str) -> bool:
        return re.search(rf"(?<![a-z0-9_]){re.escape(label.lower())}(?![a-z0-9_])", text) is not None

    # "build: the compiler ..." or "**Build** failure": the answer leads with the label.
    if re.match(rf"[^a-z0-9_]*{re.escape(local_label.lower())}(?![a-z0-9_])", text):
        return True
    mentioned = [lbl for lbl in labels if names(lbl)]
    return mentioned == [local_label]


def _json_obj(s: str) -> dict[str, Any] | None:
    fenced = _FENCE.search(s)
    candidate = fenced.group(1) if fenced else s
    try:
        value = json.loads(candidate)
    except ValueError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end <= start:
            return None
        try:
            value = json.loads(candidate[start : end + 1])
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _json_agree(local_answer: str, frontier_text: str) -> bool:
    a, b = _json_obj(local_answer), _json_obj(frontier_text)
    if a is None or b is None:
        return False
    shared = a.keys() & b.keys()
    return bool(shared) and all(a[k] == b[k] for k in shared)


# ---------------------------------------------------------------------- report


def parse_since(s: str) -> float:
    """'7d', '24h', '30m', '2w' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", s)
    if not m:
        raise ValueError(f"--since {s!r}: expected a number and a unit, e.g. 7d, 24h, 30m, 2w")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _local_cost(d: Dialect) -> str:
    """The local machine cost of one decision, from its measured local latency and the policy's price."""
    return f"(COALESCE({d.json_number('latency_ms', 'local')}, 0) / 3600000.0 * :usd_per_hour)"


_FALSE_ACCEPT = "(route_candidate = 'local' AND (shadow_agree = 0 OR review_label = 'escalate'))"


def shadow_report(path: str | Path, since_s: float, usd_per_hour: float, now: float | None = None) -> dict[str, Any]:
    """Per task type over shadow decisions since `now - since_s`: what live would have done.

    cost_saved_usd: over would-be-local decisions, the frontier cost actually paid (cost_usd less
    the local machine cost, since shadow runs both) minus the local machine cost."""
    args = {"since": (now if now is not None else time.time()) - since_s, "usd_per_hour": usd_per_hour}
    where = "mode = 'shadow' AND ts >= :since"
    conn = open_readonly(path)
    local_cost = _local_cost(dialect_of(conn))
    try:
        tasks = [
            dict(r)
            for r in conn.execute(
                f"""SELECT COALESCE(task_type, '(none)') AS task_type,
                       COUNT(*) AS n,
                       COUNT(*) FILTER (WHERE route_candidate = 'local') AS would_be_local,
                       1.0 * COUNT(*) FILTER (WHERE route_candidate = 'local') / COUNT(*) AS would_be_local_rate,
                       COUNT(*) FILTER (WHERE {_FALSE_ACCEPT}) AS would_be_false_accepts,
                       COUNT(shadow_agree) AS compared,
                       AVG(shadow_agree) AS agreement_rate,
                       COUNT(*) FILTER (WHERE review_label IS NOT NULL) AS reviewed,
                       COALESCE(SUM(CASE WHEN route_candidate = 'local'
                           THEN (COALESCE(cost_usd, 0) - {local_cost}) - {local_cost} END), 0) AS cost_saved_usd
                FROM decisions WHERE {where}
                GROUP BY task_type ORDER BY n DESC, task_type""",
                args,
            )
        ]
        false_accepts = [
            dict(r)
            for r in conn.execute(
                f"""SELECT decision_id, ts, task_type, label, confidence_calibrated, shadow_agree, review_label, preview
                FROM decisions WHERE {where} AND {_FALSE_ACCEPT} ORDER BY task_type, ts DESC""",
                args,
            )
        ]
        reasons = [
            dict(r)
            for r in conn.execute(
                f"""SELECT COALESCE(task_type, '(none)') AS task_type, COALESCE(reason, '(none)') AS reason, COUNT(*) AS n
                FROM decisions WHERE {where} AND route_candidate IS DISTINCT FROM 'local'
                GROUP BY task_type, reason ORDER BY task_type, n DESC, reason""",
                args,
            )
        ]
    finally:
        conn.close()
    for t in tasks:
        t["reasons"] = {r["reason"]: r["n"] for r in reasons if r["task_type"] == t["task_type"]}
        t["false_accept_ids"] = [f["decision_id"] for f in false_accepts if (f["task_type"] or "(none)") == t["task_type"]]
    return {"since_s": since_s, "would_be_false_accepts": false_accepts, "tasks": tasks}


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    fa = report["would_be_false_accepts"]
    lines.append(f"would-be false accepts (local candidate the frontier disagreed with, or a reviewer escalated): {len(fa)}")
    for f in fa:
        why = "review: escalate" if f["review_label"] == "escalate" else "frontier disagreed"
        prev = (f["preview"] or "").replace("\n", " ")[:60]
        lines.append(f"  {f['decision_id']}  {f['task_type'] or '-':<18} label {f['label'] or '-':<12} {why:<20} {prev}")
    lines.append("")
    if not report["tasks"]:
        lines.append("no shadow decisions in the window")
        return "\n".join(lines)
    lines.append(f"{'task':<20} {'n':>6} {'would-be local':>15} {'agree':>8} {'false acc':>9} {'saved USD':>10}  escalation reasons")
    for t in report["tasks"]:
        agree = "-" if t["agreement_rate"] is None else f"{t['agreement_rate']:.0%} of {t['compared']}"
        reasons = ", ".join(f"{k} {v}" for k, v in t["reasons"].items()) or "-"
        lines.append(
            f"{t['task_type']:<20} {t['n']:>6} {t['would_be_local_rate']:>15.0%} {agree:>8} "
            f"{t['would_be_false_accepts']:>9} {t['cost_saved_usd']:>10.4f}  {reasons}"
        )
    return "\n".join(lines)
