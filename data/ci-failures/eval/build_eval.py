"""Build the classify_issue evaluation file: the LogChunks-dev labels joined with their text.

    python data/ci-failures/eval/build_eval.py --out /tmp/eval.jsonl
    smallfirst eval --task classify_issue --data /tmp/eval.jsonl

The labels are kept here without their text (the logs' licence is unverified, so the text is not
redistributed); the text is joined on the fly from the shared copy beside the checkout
(../shared/data/logchunks-dev). `--extra FILE` appends an evaluation set kept outside the
repository that already carries its text (same fields), e.g. failure output collected locally for
measuring only. Each output row is {"id", "text", "label", "ecosystem", "source"}; the counts per
ecosystem x label go to stderr so the JSONL can also be piped.

`--half tune` keeps the LogChunks logs of the repositories at even positions in their sorted list
(200 logs, 20 repositories), `--half report` the others (198, 20): choices (a threshold, a feature
weight) are made on the tune half and numbers are reported on the report half, so no repository
serves both.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[2]
DEFAULT_LOGCHUNKS = CHECKOUT.parent / "shared" / "data" / "logchunks-dev" / "logchunks_dev.jsonl"
LOGCHUNKS_LABELS = HERE / "logchunks_dev_labels.jsonl"

# The eight labels of data/ci-failures/LABELS.md, in its order.
LABELS = ("build", "test", "dependency", "lint", "infrastructure", "security", "access", "unknown")
FIELDS = ("id", "text", "label", "ecosystem", "source")


class EvalBuildError(Exception):
    """A row that cannot be used; `str()` names the file and line."""


def read_rows(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict]]:
    required = tuple(required)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalBuildError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalBuildError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise EvalBuildError(f"{path}:{lineno}: expected an object")
            for field in required:
                if not isinstance(row.get(field), str) or not row[field]:
                    raise EvalBuildError(f"{path}:{lineno}: {field}: missing or not a non-empty string")
            if "label" in required and row["label"] not in LABELS:
                raise EvalBuildError(f"{path}:{lineno}: label: {row['label']!r} is not one of {', '.join(LABELS)}")
            yield lineno, row


HALVES = ("all", "tune", "report")


def logchunks_rows(labels_path: Path, text_path: Path, half: str = "all") -> list[dict]:
    if not text_path.is_file():
        raise EvalBuildError(f"{text_path}: LogChunks text not found (pass --logchunks PATH)")
    texts = {row["id"]: row for _, row in read_rows(text_path, ("id", "text", "source", "repo"))}
    repos = sorted({row["repo"] for row in texts.values()})
    tune = {r for i, r in enumerate(repos) if i % 2 == 0}
    out = []
    for lineno, row in read_rows(labels_path, ("id", "label", "ecosystem")):
        src = texts.get(row["id"])
        if src is None:
            raise EvalBuildError(f"{labels_path}:{lineno}: id {row['id']!r} is not in {text_path}")
        if half != "all" and (src["repo"] in tune) != (half == "tune"):
            continue
        out.append({"id": row["id"], "text": src["text"], "label": row["label"], "ecosystem": row["ecosystem"], "source": src["source"]})
    return out


def extra_rows(path: Path) -> list[dict]:
    return [{k: row[k] for k in FIELDS} for _, row in read_rows(path, FIELDS)]


def build(logchunks: Path = DEFAULT_LOGCHUNKS, extra: Iterable[Path] = (), labels: Path = LOGCHUNKS_LABELS,
          half: str = "all") -> list[dict]:
    rows = logchunks_rows(labels, logchunks, half)
    for path in extra:
        rows += extra_rows(path)
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise EvalBuildError(f"duplicate id {row['id']!r} across the evaluation sets")
        seen.add(row["id"])
    return rows


def count_table(rows: list[dict]) -> str:
    counts = collections.Counter((r["ecosystem"], r["label"]) for r in rows)
    ecosystems = sorted({e for e, _ in counts}, key=lambda e: (-sum(counts[e, lb] for lb in LABELS), e))
    width = max([len("ecosystem"), *map(len, ecosystems)])
    lines = [f"{'ecosystem':<{width}} " + " ".join(f"{lb[:5]:>5}" for lb in LABELS) + "  total"]
    for eco in ecosystems:
        cells = [counts[eco, lb] for lb in LABELS]
        lines.append(f"{eco:<{width}} " + " ".join(f"{c:>5}" for c in cells) + f"  {sum(cells):>5}")
    totals = [sum(counts[e, lb] for e in ecosystems) for lb in LABELS]
    lines.append(f"{'total':<{width}} " + " ".join(f"{c:>5}" for c in totals) + f"  {sum(totals):>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSONL to write ('-' for stdout)")
    ap.add_argument("--logchunks", type=Path, default=DEFAULT_LOGCHUNKS, help="logchunks_dev.jsonl with the text")
    ap.add_argument("--extra", type=Path, action="append", default=[], help="another evaluation JSONL with text (repeatable)")
    ap.add_argument("--half", choices=HALVES, default="all",
                    help="LogChunks' tune half (choices are made on it) or report half (numbers are reported on it)")
    args = ap.parse_args(argv)
    try:
        rows = build(args.logchunks, args.extra, half=args.half)
    except EvalBuildError as exc:
        print(f"build_eval: {exc}", file=sys.stderr)
        return 2
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if str(args.out) == "-":
        sys.stdout.write(lines)
    else:
        args.out.write_text(lines, encoding="utf-8")
    print(f"{len(rows)} rows -> {args.out}\n{count_table(rows)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
