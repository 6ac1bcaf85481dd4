"""Latency per case of both bundled models on this machine.

    python bench/local_models.py [--n 60] [--gemma-n 3] [--no-gemma]

Embedding classifier, all-MiniLM-L6-v2 on both of its paths, timed in turns in one run: the int8
ONNX Runtime path the backend runs (at 1 thread and at one per core) and the numpy float32
reference (one BLAS thread, as `smallfirst serve` runs numpy). classify_issue is what the router
does with a real BUMP log: compress it, embed its last 256-token window, apply the bundled head;
the backend row is the same through EmbeddingBackend. Zero-shot embeds a short text. Gemma 3 270M
(llama.cpp in-process): label scoring, grammar-constrained JSON and a log summary, on a short
input and a ~4000-character compressed log. Prints p50/p95 per case and the load times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads; see cmd_serve
sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, percentile, time_calls, time_side_by_side  # noqa: E402

from smallfirst.backends.embedding import EmbeddingBackend, embed_texts  # noqa: E402
from smallfirst.backends.minilm import MiniLMEncoder, default_model_dir  # noqa: E402
from smallfirst.backends.minilm_onnx import OnnxMiniLMEncoder, build_graph  # noqa: E402
from smallfirst.logtext import compress_log  # noqa: E402
from smallfirst.policy import load_policy  # noqa: E402
from smallfirst.router import LOCAL_INPUT_BUDGET  # noqa: E402
from smallfirst.train import load_head  # noqa: E402

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
SHORT = "npm test failed: 3 assertions failed in test/api.spec.ts, expected 200 got 500"


def row(model, case, times, cpu=None, ratio=""):
    cpu_p50 = f"{percentile(cpu, 50):.1f}" if cpu else ""
    print(f"{model:<46} {case:<40} {len(times):>4} {percentile(times, 50):>9.1f} {percentile(times, 95):>9.1f} "
          f"{cpu_p50:>9} {ratio:>8}")


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--gemma-n", type=int, default=3)
    ap.add_argument("--no-gemma", action="store_true")
    args = ap.parse_args()
    print(describe())
    print(f"load average {os.getloadavg()[0]:.1f} at the start (other work on this machine slows every row)")
    policy = load_policy(None)
    logs = [json.loads(line)["text"] for line in (DATA / "bump" / "bump_failures.jsonl").read_text().splitlines()[:40]]
    compressed = [compress_log(t, LOCAL_INPUT_BUDGET).text for t in logs]
    classify = policy.tasks["classify_issue"]
    head = load_head(policy.resolve_path(classify.head))

    cores = os.cpu_count() or 1
    encoders = {
        "numpy float32 (reference)": MiniLMEncoder(),
        "onnxruntime int8, 1 thread": OnnxMiniLMEncoder(threads=1),
        f"onnxruntime int8, {cores} threads": OnnxMiniLMEncoder(threads=cores),
    }
    loads = {name: timed(enc.load) for name, enc in encoders.items()}
    build = timed(lambda: build_graph(default_model_dir()))
    backend = EmbeddingBackend(policy.models["local_classifier"], policy)  # the shared int8 encoder
    backend_load = timed(backend.load)
    print(f"load: numpy {loads['numpy float32 (reference)']:.2f} s (sha256 of model.safetensors + weights); "
          f"int8 {loads[f'onnxruntime int8, {cores} threads']:.2f} s from the cache (read + sha256 + session); "
          f"building the int8 graph {build:.2f} s (first use only); backend with head {backend_load:.2f} s")
    print(f"{'model':<46} {'case':<40} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'CPU p50':>9} {'speed-up':>8}")

    def classify_with(enc):
        def run(text):
            vec, _ = embed_texts(enc, [text], head.window)
            return head.probabilities(vec, head.word_counts([text])), head.similarity(vec)
        return run

    for enc in encoders.values():
        classify_with(enc)(compressed[0])  # warm-up
    times = time_side_by_side({name: classify_with(enc) for name, enc in encoders.items()}, compressed, args.n)
    base = percentile(times["numpy float32 (reference)"][0], 50)
    for name, (wall, cpu) in times.items():
        row(f"all-MiniLM-L6-v2 {name}", "classify_issue: BUMP log, 256 tokens, head", wall, cpu,
            f"{base / percentile(wall, 50):.1f}x")
    row("all-MiniLM-L6-v2 int8, EmbeddingBackend", "classify_issue, complete_sync", time_calls(
        lambda x: backend.complete_sync(x, classify), compressed, args.n))
    short = time_side_by_side({name: (lambda enc: lambda x: embed_texts(enc, [x], head.window))(enc)
                               for name, enc in encoders.items()}, [SHORT], args.n)
    base = percentile(short["numpy float32 (reference)"][0], 50)
    for name, (wall, cpu) in short.items():
        row(f"all-MiniLM-L6-v2 {name}", "a short text (22 tokens)", wall, cpu, f"{base / percentile(wall, 50):.1f}x")
    if args.no_gemma:
        return

    from smallfirst.backends.llamacpp import LlamaCppBackend

    gem = LlamaCppBackend(policy.models["local_default"])
    print(f"load: gemma-3-270m-q4_k_m {timed(gem.load):.2f} s (includes the sha256 check)")
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
