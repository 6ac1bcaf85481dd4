"""Secret masking: its cost where it runs, and how much of real, secret-free text it masks.

Cost: `preview()` on the audit writer's 1 kB window (every decision) and `mask_secrets()` on a
12k-character input (the escalation packet), over real CI logs from BUMP and LogChunks.
Over-masking: how many spans of each kind are masked in the datasets, which hold no planted
secrets (what fires there is either a real leak in a public log or a false positive; the lines
are printed with --show).

    python bench/masking.py [--n 2000] [--compare OLD_REDACT.py] [--show KIND]

--compare loads another redact.py (e.g. `git show HEAD~5:src/smallfirst/redact.py > /tmp/old.py`)
and times it side by side in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, percentile, time_calls  # noqa: E402

from smallfirst import redact  # noqa: E402
from smallfirst.audit import PREVIEW_CHARS, PREVIEW_WINDOW  # noqa: E402

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
SETS = {"bump": DATA / "bump" / "bump_failures.jsonl", "logchunks": DATA / "logchunks-dev" / "logchunks_dev.jsonl",
        "nlbse24": DATA / "nlbse24-train" / "train.jsonl"}


def texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("redact_compare", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["redact_compare"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--compare", help="another redact.py to time beside this one")
    ap.add_argument("--show", help="print the masked spans of this kind")
    args = ap.parse_args()
    print(describe())
    corpus = {name: texts(p) for name, p in SETS.items() if p.exists()}
    logs = corpus.get("bump", []) + corpus.get("logchunks", [])
    windows = [t[-PREVIEW_WINDOW:] for t in logs if len(t) >= PREVIEW_WINDOW][:200]
    big = [t[-12000:] for t in logs if len(t) >= 12000][:50]
    modules = {"this": redact}
    if args.compare:
        modules["compare"] = load_module(args.compare)
    print(f"{'module':<8} {'call':<34} {'p50 ms':>8} {'p99 ms':>8}")
    for name, mod in modules.items():
        for label, fn, inputs in (
            (f"preview, {PREVIEW_WINDOW}-char window", lambda t, m=mod: m.preview(t, PREVIEW_CHARS), windows),
            ("mask_secrets, 12k chars", lambda t, m=mod: m.mask_secrets(t), big),
            ("find_secrets(distinctive), 12k", lambda t, m=mod: m.find_secrets(t, distinctive_only=True), big),
        ):
            time_calls(fn, inputs, 100)
            times = time_calls(fn, inputs, args.n if "window" in label else max(1, args.n // 10))
            print(f"{name:<8} {label:<34} {percentile(times, 50):>8.3f} {percentile(times, 99):>8.3f}")
    print()
    for name, items in corpus.items():
        kinds: Counter[str] = Counter()
        rows = 0
        for t in items:
            found = redact.find_secrets(t)
            rows += bool(found)
            for s in found:
                kinds[s.kind] += 1
                if args.show == s.kind:
                    a, b = s.span
                    print(f"  {name}: ...{t[max(0, a - 60):a]!r} [{t[a:b][:40]!r}] {t[b:b + 30]!r}")
        print(f"{name}: {len(items)} texts, {rows} with something masked; spans by kind: "
              + (", ".join(f"{k} {v}" for k, v in kinds.most_common()) or "none"))


if __name__ == "__main__":
    main()
