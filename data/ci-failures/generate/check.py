"""A fast check of the training data, without the embedding model (seconds, not half an hour).

    .venv/bin/python data/ci-failures/generate/check.py [train/all.jsonl]

TF-IDF over the last 1,500 characters of each text (where a CI log's failure is) and a logistic
regression, reporting:
- 5-fold stratified CV: near 1.0 would mean the rows are too easy or too repetitive;
- 5-fold CV grouped by tool: every fold's tools are unseen in training, a harsh lower bound of
  how far the data carries to tools it does not contain;
- leave one CI system out: trained without any row of one CI system (GitHub Actions, Travis, ...),
  tested on that system's rows. Close to the stratified figure when the CI wrapper carries no label;
- wrapper only: the same classifier on each row with its failure body (the lines `body_lines`
  names) and the failing command removed, i.e. on CI preamble, runner lines and tail alone. It
  must be at chance (balanced accuracy about 1/8): the wrapper is drawn independently of the label;
- the label skew of runner and CI closing lines (`make: ***`, `npm ERR!`, `Finished: FAILURE`, ...):
  within an ecosystem, rows holding one must carry the same label mix as rows without;
- accuracy on BUMP's 570 real Maven logs (../shared/data/bump, labels mapped through the
  bundled bump.json) and on the 398 LogChunks-dev Travis logs labelled in ../eval: real logs
  from sources these rows never saw.
These are properties of the data, not of the bundled head (MiniLM + logistic regression).
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

ROOT = Path(__file__).resolve().parents[3]
BUMP = ROOT.parent / "shared" / "data" / "bump" / "bump_failures.jsonl"
BUMP_MAP = ROOT / "src" / "smallfirst" / "data" / "label_maps" / "bump.json"
sys.path.insert(0, str(ROOT / "data" / "ci-failures" / "eval"))
import build_eval  # noqa: E402  (beside the data, not a package)

LOGCHUNKS = build_eval.DEFAULT_LOGCHUNKS


def tail(text: str) -> str:
    return text[-1500:]


def wrapper_only(row: dict) -> str:
    """The row's text without its failure body and without the failing tool's command."""
    lines = row["text"].split("\n")
    drop = {i for a, b in row.get("body_lines", []) for i in range(a, b)}
    text = "\n".join(s for i, s in enumerate(lines) if i not in drop)
    cmd = row.get("command") or ""
    return text.replace(cmd, " ") if cmd.strip() else text


def ci_system(row: dict) -> str:
    return row["wrapper"].split("+")[0]


# The closing lines a runner or CI system prints whatever failed under it. In real logs they go
# with every label; where a training set ties one of them to a few labels, a model learns that.
SIGNATURES = {
    "npm script failed": r"^npm (?:ERR!|error) (?:code ELIFECYCLE|Test failed|command failed|Lifecycle script)",
    "pnpm ELIFECYCLE": r"^ ELIFECYCLE ",
    "yarn error Command failed": r"^error Command failed with exit code",
    "make: ***": r"^make(?:\[\d+\])?: \*\*\*",
    "just error: Recipe": r"^error: Recipe `",
    "rake aborted!": r"^rake aborted!",
    "tox": r"InvocationError for command|evaluation failed :\(",
    "nox Session failed": r"^nox > Session .* failed",
    "Gradle FAILURE": r"^FAILURE: Build failed with an exception",
    "composer Script ... returned": r"^Script .* handling the .* event returned with error code",
    "Maven BUILD FAILURE": r"\[INFO\] BUILD FAILURE",
    "Travis Done": r"^Done\. Your build exited with",
    "GHA exit code": r"Process completed with exit code",
    "GitLab Job failed": r"ERROR: Job failed",
    "Jenkins Finished: FAILURE": r"^Finished: FAILURE",
}


def signature_skew(rows: list[dict], permutations: int = 20) -> list[tuple[str, int, float, float]]:
    """(signature, rows holding it, total variation distance between the label distribution of
    those rows and the one expected from their ecosystems alone, the same distance when labels are
    shuffled within each ecosystem): equal distances mean the signature says nothing about the
    label beyond the ecosystem it appears in (a few rows are never at 0)."""
    out = []
    rng = random.Random(0)
    for name, n, tvd in _skew(rows):
        null = []
        for _ in range(permutations):
            by: dict[str, list[str]] = {}
            for r in rows:
                by.setdefault(r["ecosystem"], []).append(r["label"])
            for v in by.values():
                rng.shuffle(v)
            shuffled = [dict(r, label=by[r["ecosystem"]].pop()) for r in rows]
            null.append(dict((a, c) for a, _, c in _skew(shuffled, only=name))[name])
        out.append((name, n, tvd, sum(null) / len(null)))
    return out


def _skew(rows: list[dict], only: str | None = None) -> list[tuple[str, int, float]]:
    by_eco: dict[str, Counter] = {}
    for r in rows:
        by_eco.setdefault(r["ecosystem"], Counter())[r["label"]] += 1
    labels = sorted({r["label"] for r in rows})
    out = []
    for name, pat in SIGNATURES.items():
        if only and name != only:
            continue
        rx = re.compile(pat, re.M)
        hits = [r for r in rows if rx.search(r["text"])]
        if not hits:
            continue
        n = len(hits)
        seen = Counter(r["label"] for r in hits)
        expected = Counter()
        for r in hits:
            e = by_eco[r["ecosystem"]]
            for k in labels:
                expected[k] += e[k] / sum(e.values()) / n
        out.append((name, n, 0.5 * sum(abs(seen[k] / n - expected[k]) for k in labels)))
    return out


def model():
    return make_pipeline(
        TfidfVectorizer(token_pattern=r"[A-Za-z_]{2,}", sublinear_tf=True, min_df=2, max_features=50000),
        LogisticRegression(max_iter=2000, C=3, class_weight="balanced"),
    )


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "train" / "all.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    y = [r["label"] for r in rows]
    x = [tail(r["text"]) for r in rows]
    print(f"{path}: {len(rows)} rows")
    p = cross_val_predict(model(), x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    strat = accuracy_score(y, p)
    print(f"stratified 5-fold CV accuracy:              {strat:.3f}")
    p = cross_val_predict(model(), x, y, cv=GroupKFold(5), groups=[r["tool"] for r in rows])
    print(f"5-fold CV grouped by tool (tools unseen):   {accuracy_score(y, p):.3f}")

    systems = [ci_system(r) for r in rows]
    p = cross_val_predict(model(), x, y, cv=LeaveOneGroupOut(), groups=systems)
    print(f"leave one CI system out:                    {accuracy_score(y, p):.3f}  (stratified {strat:.3f})")
    per = {s: accuracy_score([a for a, g in zip(y, systems) if g == s], [b for b, g in zip(p, systems) if g == s]) for s in sorted(set(systems))}
    print("    held-out system: " + ", ".join(f"{s} {v:.2f} (n={systems.count(s)})" for s, v in sorted(per.items(), key=lambda kv: -systems.count(kv[0]))))

    if all("body_lines" in r for r in rows):
        xw = [tail(wrapper_only(r)) for r in rows]
        p = cross_val_predict(model(), xw, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
        majority = Counter(y).most_common(1)[0][1] / len(y)
        print(f"wrapper only (body and command removed):    balanced accuracy {balanced_accuracy_score(y, p):.3f} (chance {1 / len(set(y)):.3f}), "
              f"accuracy {accuracy_score(y, p):.3f} (majority class {majority:.3f})")
    else:
        print("wrapper only: rows carry no body_lines; skipped")

    skew = signature_skew(rows)
    print("runner/CI closing lines, label skew: distance from the label mix their ecosystems predict (the same with labels shuffled):")
    print("    " + ", ".join(f"{name} {tvd:.2f} ({null:.2f}, n={n})" for name, n, tvd, null in skew))

    clf = model().fit(x, y) if BUMP.exists() or LOGCHUNKS.exists() else None
    if BUMP.exists():
        mapping = json.loads(BUMP_MAP.read_text())
        bump = [json.loads(line) for line in BUMP.open(encoding="utf-8")]
        by = [mapping[r["label"]] for r in bump]
        bp = clf.predict([tail(r["text"]) for r in bump])
        print(f"BUMP real Maven logs, never trained on:     {accuracy_score(by, bp):.3f} ({len(bump)} logs)")
        labels = sorted(set(by))
        print(classification_report(by, bp, labels=labels, zero_division=0))
    if LOGCHUNKS.exists():
        evaluation = build_eval.build(LOGCHUNKS)
        ly = [r["label"] for r in evaluation]
        lp = clf.predict([tail(r["text"]) for r in evaluation])
        print(f"LogChunks-dev real Travis logs, labelled here (../eval), never trained on: {accuracy_score(ly, lp):.3f} ({len(evaluation)} logs), "
              f"balanced accuracy {balanced_accuracy_score(ly, lp):.3f}")
        print(classification_report(ly, lp, labels=sorted(set(ly)), zero_division=0))


if __name__ == "__main__":
    main()
