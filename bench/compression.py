"""How much of the hand-labelled failure survives compress_log, and how much it compresses.

Data: LogChunks dev split (Travis CI logs with the gold failure-reason chunk). A chunk survives
when every non-blank line of it, whitespace-normalised, occurs in the compressed text. Rows whose
chunk is not in the excerpt at all (chunk_first_line_in_text false) cannot survive; survival is
reported over all rows and over the rows whose chunk lines are all in the input.

    python bench/compression.py [--data PATH] [--budgets 2000 4000 8000]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from smallfirst.logtext import compress_log  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "logchunks-dev" / "logchunks_dev.jsonl"
_WS = re.compile(r"\s+")


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


def chunk_lines(label: str) -> list[str]:
    return [n for n in (_norm(line) for line in label.splitlines()) if n]


def kept_fraction(lines: list[str], compressed: str) -> float:
    text = _norm(compressed)
    return sum(line in text for line in lines) / len(lines) if lines else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--budgets", type=int, nargs="+", default=[2000, 4000, 8000])
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    gold = [chunk_lines(r["label"]) for r in rows]
    # A row is answerable when all its chunk lines are in the (uncompressed) input.
    answerable = [kept_fraction(g, r["text"]) == 1.0 for r, g in zip(rows, gold)]
    print(describe())
    print(f"data: {args.data} ({len(rows)} rows; chunk fully in input: {sum(answerable)}; "
          f"chunk_first_line_in_text: {sum(bool(r.get('chunk_first_line_in_text')) for r in rows)})")
    print()
    header = (f"{'budget':>6} | {'survive all':>11} | {'survive answerable':>18} | {'mean kept frac':>14} | "
              f"{'ratio median':>12} | {'ratio mean':>10} | {'ms/log mean':>11} | {'ms/log max':>10}")
    print(header)
    print("-" * len(header))
    for budget in args.budgets:
        survived, fractions, ratios, times = [], [], [], []
        for r, g in zip(rows, gold):
            t0 = time.perf_counter()
            c = compress_log(r["text"], budget)
            times.append((time.perf_counter() - t0) * 1000)
            assert len(c.text) <= budget, (r["id"], len(c.text))
            f = kept_fraction(g, c.text)
            fractions.append(f)
            survived.append(f == 1.0)
            ratios.append(c.ratio)
        ans = [s for s, a in zip(survived, answerable) if a]
        ans_frac = [f for f, a in zip(fractions, answerable) if a]
        print(
            f"{budget:>6} | {sum(survived) / len(rows):>10.1%} | "
            f"{sum(ans) / max(1, len(ans)):>17.1%} | "
            f"{statistics.mean(fractions):>6.1%} / {statistics.mean(ans_frac):>5.1%} | "
            f"{statistics.median(ratios):>12.2f} | {statistics.mean(ratios):>10.2f} | "
            f"{statistics.mean(times):>11.2f} | {max(times):>10.2f}"
        )
    print("\nmean kept frac: all rows / answerable rows. ratio = input chars / compressed chars.")


if __name__ == "__main__":
    main()
