"""How often each hard-stop category fires on real data, with examples to judge false positives.

For each dataset in ../shared/data: rows that trigger each category (every category checked,
not just the first), a few masked example excerpts per category with their rule ids, and the
time scan() takes. BUMP's README says about 10 excerpts mention 401/403/Unauthorized/Forbidden;
those should be access stops.

    python bench/hardstop_rates.py [--data DIR] [--examples 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from smallfirst.hardstops import HardStops  # noqa: E402
from smallfirst.reasons import HARD_STOP_CATEGORIES  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # shared/ beside the checkout
DATASETS = {
    "bump": "bump/bump_failures.jsonl",
    "logchunks-dev": "logchunks-dev/logchunks_dev.jsonl",
    "nlbse24-train": "nlbse24-train/train.jsonl",
    "loghub-2k": "loghub-2k/loghub_2k_lines.jsonl",
}
POLICY_PHRASES = {"access": ["registry auth", "SSO"]}  # the bundled policy's additions


def timing(hs: HardStops, texts: list[str], size: int = 12_000, repeat: int = 3) -> tuple[float, float, float]:
    """Median, p95 and max microseconds of scan() on inputs cut to `size` characters."""
    samples = []
    for t in texts:
        t = t[:size]
        best = min(_time(hs, t) for _ in range(repeat))
        samples.append(best)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)], samples[-1]


def _time(hs: HardStops, text: str) -> float:
    t0 = time.perf_counter()
    hs.scan(text)
    return (time.perf_counter() - t0) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--examples", type=int, default=4)
    args = ap.parse_args()
    hs = HardStops(POLICY_PHRASES)
    print(describe())
    print(f"rules: {len(hs.rule_ids)} (policy phrases: {POLICY_PHRASES})\n")
    long_texts: list[str] = []
    for name, rel in DATASETS.items():
        path = args.data / rel
        if not path.exists():
            print(f"{name}: missing ({path})\n")
            continue
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        counts: Counter[str] = Counter()
        rules: dict[str, Counter[str]] = defaultdict(Counter)
        examples: dict[str, list[str]] = defaultdict(list)
        any_stop = 0
        for row in rows:
            matches = HardStops.scan(hs, row["text"])
            any_stop += bool(matches)
            for m in matches:
                counts[m.category] += 1
                rules[m.category][m.rule] += 1
                if len(examples[m.category]) < args.examples:
                    examples[m.category].append(f"{row['id']}: [{m.rule}] {m.excerpt}")
        long_texts += [r["text"] for r in rows if len(r["text"]) >= 12_000][:150]
        print(f"== {name}: {len(rows)} rows, {any_stop} ({any_stop / len(rows):.1%}) trigger any hard stop")
        for c in HARD_STOP_CATEGORIES:
            top = ", ".join(f"{r} {n}" for r, n in rules[c].most_common(6))
            print(f"  {c:<10} {counts[c]:>5} ({counts[c] / len(rows):6.1%})  {top}")
            for ex in examples[c]:
                print(f"      e.g. {ex}")
        if name == "bump":
            needle = ("401", "403", "unauthorized", "forbidden")
            mention = [r for r in rows if any(k in r["text"].lower() for k in needle)]
            hit = [r for r in mention if any(m.category == "access" for m in hs.scan(r["text"]))]
            print(f"  rows mentioning 401/403/Unauthorized/Forbidden (substring): {len(mention)}, access stop on {len(hit)}")
            for r in mention:
                if r not in hit:
                    low = r["text"].lower()
                    i = min(low.find(k) for k in needle if k in low)
                    print(f"      no access stop: {r['id']}: ...{' '.join(r['text'][max(0, i - 60):i + 60].split())}...")
        print()
    med, p95, mx = timing(hs, long_texts)
    print(f"scan() on {len(long_texts)} real inputs cut to 12,000 chars: median {med:.0f} us, p95 {p95:.0f} us, max {mx:.0f} us")
    clean = "\n".join(f"[INFO] Building module {i} of the reactor, compiling sources" for i in range(220))[:12_000]
    med, p95, mx = timing(hs, [clean] * 50)
    print(f"scan() on a 12,000-char log with no cue words: median {med:.0f} us")


if __name__ == "__main__":
    main()
