"""Latency per case of both bundled models on this machine, through their backends.

    python bench/local_models.py [--n 20] [--gemma-n 3]

Embedding classifier (all-MiniLM-L6-v2 in numpy): the bundled classify_issue head on real BUMP
logs (compressed as the router does), and zero-shot on short texts. Gemma 3 270M (llama.cpp
in-process): label scoring, grammar-constrained JSON and a log summary, on a short input and a
~4000-character compressed log. Prints p50/p95 per case and the load times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, percentile, time_calls  # noqa: E402

from smallfirst.backends.embedding import EmbeddingBackend  # noqa: E402
from smallfirst.backends.llamacpp import LlamaCppBackend  # noqa: E402
from smallfirst.logtext import compress_log  # noqa: E402
from smallfirst.policy import load_policy  # noqa: E402
from smallfirst.router import LOCAL_INPUT_BUDGET  # noqa: E402

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
SHORT = "npm test failed: 3 assertions failed in test/api.spec.ts, expected 200 got 500"


def row(model, case, times):
    print(f"{model:<22} {case:<38} {len(times):>4} {percentile(times, 50):>9.1f} {percentile(times, 95):>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--gemma-n", type=int, default=3)
    args = ap.parse_args()
    print(describe())
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(default)')}")
    policy = load_policy(None)
    logs = [json.loads(line)["text"] for line in (DATA / "bump" / "bump_failures.jsonl").read_text().splitlines()[:40]]
    compressed = [compress_log(t, LOCAL_INPUT_BUDGET).text for t in logs]

    t = time.perf_counter()
    emb = EmbeddingBackend(policy.models["local_classifier"], policy)
    emb.load()
    emb_load = time.perf_counter() - t
    t = time.perf_counter()
    gem = LlamaCppBackend(policy.models["local_default"])
    gem.load()
    gem_load = time.perf_counter() - t
    print(f"load: all-MiniLM-L6-v2 {emb_load:.2f}s, gemma-3-270m-q4_k_m {gem_load:.2f}s (includes sha256 check)")
    print(f"{'model':<22} {'case':<38} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}")

    classify = policy.tasks["classify_issue"]
    zero_shot = classify.model_copy(update={"head": None})
    emb.complete_sync(compressed[0], classify)  # warm-up
    row("all-MiniLM-L6-v2", "classify_issue, trained head, BUMP log", time_calls(lambda x: emb.complete_sync(x, classify), compressed, args.n))
    row("all-MiniLM-L6-v2", "classify_issue, zero-shot, short text", time_calls(lambda x: emb.complete_sync(x, zero_shot), [SHORT], args.n))

    long_log = [c for c in compressed if len(c) > 3500][:3] or compressed[:3]
    summarize, shape = policy.tasks["summarize_log"], policy.tasks["shape_json"]
    gemma_classify = classify.model_copy(update={"model": "local_default", "head": None})
    for name, spec in (("classify (6 labels)", gemma_classify), ("shape_json (grammar)", shape), ("summarize_log", summarize)):
        gem.complete_sync(SHORT, spec)  # warm-up per mode
        row("gemma-3-270m-q4_k_m", f"{name}, short", time_calls(lambda x: gem.complete_sync(x, spec), [SHORT], args.gemma_n))
        row("gemma-3-270m-q4_k_m", f"{name}, ~4k-char log", time_calls(lambda x: gem.complete_sync(x, spec), long_log, args.gemma_n))
    gem.close()


if __name__ == "__main__":
    main()
