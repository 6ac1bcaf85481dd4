"""Does the int8 encoder change what the classifier decides? The bundled classify_issue head's
training run (the README's `smallfirst train` command: BUMP, its label map, the demo logs held
out) on both encoder paths, over several cross-validation seeds, and the agreement of the two
paths' embeddings on the same windows.

    python bench/minilm_int8_accuracy.py [--seeds 0 1 2 3 4]

Every number is out of fold (see train.py); seed 0 is the bundled head's own run. Each window is
embedded once per path and reused across seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe  # noqa: E402

from smallfirst.backends.embedding import shared_encoder  # noqa: E402
from smallfirst.backends.minilm import MiniLMEncoder  # noqa: E402
from smallfirst.policy import load_policy  # noqa: E402
from smallfirst.train import load_label_map, train_head  # noqa: E402

ROOT = Path(__file__).parents[1]
DATA = ROOT / ".." / "shared" / "data" / "bump" / "bump_failures.jsonl"
LABEL_MAP = ROOT / "src" / "smallfirst" / "data" / "label_maps" / "bump.json"
DEMO = ROOT / "src" / "smallfirst" / "data" / "demo" / "ci_logs.jsonl"


class Memo:
    """An encoder that embeds each window once: the seeds differ in folds, not in embeddings."""

    def __init__(self, encoder: MiniLMEncoder):
        self.encoder, self.sha256 = encoder, encoder.sha256
        self.vectors: dict[tuple[int, ...], np.ndarray] = {}

    def token_ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoder.token_ids_batch(texts)

    def encode_ids(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        todo = list(dict.fromkeys(tuple(w) for w in windows if tuple(w) not in self.vectors))
        if todo:
            for key, vec in zip(todo, self.encoder.encode_ids(todo)):
                self.vectors[key] = vec
        return np.stack([self.vectors[tuple(w)] for w in windows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    print(describe())
    task = load_policy(None).tasks["classify_issue"]
    held_out = {json.loads(line)["id"] for line in DEMO.read_text().splitlines() if line.strip()}
    paths = {"numpy float32": Memo(MiniLMEncoder()), "onnxruntime int8": Memo(shared_encoder())}
    print(f"{'encoder':<17} {'seed':>4} {'accuracy':>8} {'local':>9} {'acc. local':>10} {'false acc.':>10} {'novel':>5} {'ECE cal.':>8}")
    totals: dict[str, list[tuple[float, int, int]]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, memo in paths.items():
                r = train_head(task, DATA, Path(tmp) / "head.json", label_map=load_label_map(LABEL_MAP), seed=seed,
                               encoder=memo, exclude_ids=held_out, command="bench")  # type: ignore[arg-type]
                totals[name].append((r.accuracy, r.accepted, r.false_accepts))
                print(f"{name:<17} {seed:>4} {r.accuracy:>8.4f} {r.accepted:>4}/{r.n:<4} {r.accepted_accuracy:>10.4f} "
                      f"{r.false_accepts:>10} {r.novel:>5} {r.ece_calibrated:>8.4f}", flush=True)
    for name, rows in totals.items():
        acc, local, fa = (np.mean([row[i] for row in rows]) for i in range(3))
        print(f"{name:<17} mean over {len(rows)} seeds: accuracy {acc:.4f}, local {local:.1f}, false accepts {fa:.1f}")
    ref, fast = (paths[n].vectors for n in paths)
    cos = np.array([float(ref[k] @ fast[k]) for k in ref])
    print(f"cosine int8 vs float32 over the {len(cos)} training windows: min {cos.min():.4f}, "
          f"p1 {np.percentile(cos, 1):.4f}, median {np.median(cos):.4f}")


if __name__ == "__main__":
    main()
