"""Is a Gemma 3 270M (base model) log summary useful? Overlap with the hand-labelled failure chunk.

Data: LogChunks dev split (Travis CI logs, gold = the failure-reason chunk, field `label`). Each
log is compressed with smallfirst.logtext.compress_log (as the router does for summarize_log)
and summarised by the embedded backend. A summary *overlaps* the gold chunk when

  cites   it shares a name with it: an identifier, path or error code of 5+ characters
          (smallfirst.logtext's extractors, the same the grounding check uses; "exit code N"
          does not count, every failed CI job has one),
  word    it shares a word of 5+ characters that is not a generic CI word (error, failed, ...),
  line    it is a line of the chunk, or contains the chunk's first line.

Two baselines without a model, scored the same way, say whether the model adds anything: the last
line of the compressed log, and its last line that mentions an error or a failure. The model's
confidence (geometric-mean token probability) is compared between overlapping and other rows.

    python bench/summarize_quality.py [--rows 30] [--data PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from smallfirst.backends.llamacpp import LlamaCppBackend  # noqa: E402
from smallfirst.logtext import compress_log, extract_error_codes, extract_identifiers, extract_paths  # noqa: E402
from smallfirst.policy import DEFAULT_POLICY_PATH, ModelSpec, TaskSpec  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "logchunks-dev" / "logchunks_dev.jsonl"
LOCAL_INPUT_BUDGET = 4000  # what the router hands the local model (router.LOCAL_INPUT_BUDGET)
GENERIC = {
    "error", "errors", "failed", "failure", "failures", "build", "exited", "command", "travis",
    "which", "there", "while", "could", "should", "above", "below", "following", "found", "script",
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9_]{5,}")
_WS = re.compile(r"\s+")
_ERRORISH = re.compile(r"error|fail|exception|fatal", re.IGNORECASE)


def names(text: str) -> set[str]:
    found = extract_identifiers(text) | set(extract_paths(text)) | set(extract_error_codes(text))
    return {n for n in found if len(n) >= 5 and not n.startswith("exit code")}


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - GENERIC


def norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


def overlap(summary: str, gold: str) -> dict[str, bool]:
    s, g = norm(summary), norm(gold)
    first = next((norm(line) for line in gold.splitlines() if line.strip()), "")
    return {
        "cites": bool(names(summary) & names(gold)),
        "word": bool(words(summary) & words(gold)),
        "line": (len(s) >= 10 and s in g) or (len(first) >= 10 and first in s),
    }


def baselines(compressed: str) -> dict[str, str]:
    lines = [line.strip() for line in compressed.splitlines() if line.strip() and not line.startswith("... [")]
    errorish = [line for line in lines if _ERRORISH.search(line)]
    return {"last line": lines[-1] if lines else "", "last error line": errorish[-1] if errorish else ""}


def auroc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def summarize_spec() -> TaskSpec:
    # Straight from the bundled policy's task, without validating the rest of the file.
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))["tasks"]["summarize_log"]
    return TaskSpec(name="summarize_log", **raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    print(describe())
    rows = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    step = max(1, len(rows) // args.rows)
    rows = rows[::step][: args.rows]  # spread over the repositories, not the first few
    spec = summarize_spec()
    backend = LlamaCppBackend(ModelSpec(provider="llamacpp", threads=args.threads))
    t = time.perf_counter()
    backend.load()
    print(f"model {backend.name} loaded in {time.perf_counter() - t:.1f}s; {len(rows)} rows of {args.data.name}\n")

    scored: list[dict] = []
    for row in rows:
        compressed = compress_log(row["text"], LOCAL_INPUT_BUDGET).text
        t = time.perf_counter()
        out = backend.complete_sync(compressed, spec)
        seconds = time.perf_counter() - t
        hit = overlap(out.answer, row["label"])
        base = {name: overlap(text, row["label"]) for name, text in baselines(compressed).items()}
        scored.append({"hit": hit, "base": base, "confidence": out.confidence or 0.0, "seconds": seconds,
                       "tokens_in": out.tokens_in, "tokens_out": out.tokens_out})
        mark = "".join(k[0] if v else "." for k, v in hit.items())
        print(f"{mark} conf={out.confidence:.2f} {seconds:5.1f}s {row['id'][10:60]:50} {out.answer[:70]!r}")

    n = len(scored)
    print(f"\noverlap with the gold chunk over {n} rows (cites / word / line / any):")
    for who in ["model", "last line", "last error line"]:
        hits = [s["hit"] if who == "model" else s["base"][who] for s in scored]
        rates = [sum(h[k] for h in hits) / n for k in ("cites", "word", "line")]
        any_rate = sum(any(h.values()) for h in hits) / n
        print(f"  {who:16} " + " / ".join(f"{r:4.0%}" for r in (*rates, any_rate)))
    useful = [s["confidence"] for s in scored if any(s["hit"].values())]
    other = [s["confidence"] for s in scored if not any(s["hit"].values())]
    print(
        f"\nconfidence: mean {statistics.mean(useful) if useful else float('nan'):.2f} when the summary overlaps "
        f"(n={len(useful)}), {statistics.mean(other) if other else float('nan'):.2f} when not (n={len(other)}); "
        f"AUROC of confidence for overlap {auroc(useful, other):.2f}"
    )
    secs = [s["seconds"] for s in scored]
    print(
        f"latency per summary: median {statistics.median(secs):.1f}s, max {max(secs):.1f}s; "
        f"median tokens in {statistics.median(s['tokens_in'] for s in scored):.0f}, "
        f"out {statistics.median(s['tokens_out'] for s in scored):.0f}"
    )
    backend.close()


if __name__ == "__main__":
    main()
