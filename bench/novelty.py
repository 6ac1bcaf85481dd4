"""Novelty that adapts: per-class centroids (head format 1) against the nearest training embedding
(format 2), on real logs.

    python bench/novelty.py [--added 5]

The head's training data is BUMP (Maven); LogChunks-dev (Travis CI logs of other languages) stands
for traffic it has never seen. Both scores get a threshold at the 1st percentile of out-of-fold
scores on BUMP (about 1 in 100 in-distribution inputs flagged), then: how many LogChunks logs are
flagged novel, and, per language, how many of its logs stay novel once `--added` of them are
added to the training embeddings (as a learn run adds kept examples).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe  # noqa: E402

from smallfirst.backends.embedding import embed_texts, shared_encoder  # noqa: E402
from smallfirst.heads import DEFAULT_WINDOW, kth_similarity  # noqa: E402
from smallfirst.policy import load_policy  # noqa: E402
from smallfirst.train import NOVELTY_PERCENTILE, load_label_map, prepare_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LANGUAGES = ("Python", "Ruby", "Go", "JavaScript", "C++")


def centroids(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    c = np.stack([x[y == i].mean(axis=0) for i in np.unique(y)])
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return (xq @ c.T).max(axis=1)


def nearest(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    return kth_similarity(xq.astype(np.float32), x.astype(np.float32), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--added", type=int, default=5)
    args = ap.parse_args()
    from sklearn.model_selection import StratifiedKFold

    print(describe())
    spec = load_policy().tasks["classify_issue"]
    label_map = load_label_map(ROOT / "src" / "smallfirst" / "data" / "label_maps" / "bump.json")
    bump = [json.loads(line) for line in (DATA / "bump" / "bump_failures.jsonl").open()]
    chunks = [json.loads(line) for line in (DATA / "logchunks-dev" / "logchunks_dev.jsonl").open()]
    enc = shared_encoder()
    xb, _ = embed_texts(enc, [prepare_text(r["text"], spec) for r in bump], DEFAULT_WINDOW)
    xl, _ = embed_texts(enc, [prepare_text(r["text"], spec) for r in chunks], DEFAULT_WINDOW)
    yb = np.array([["build", "test", "dependency"].index(label_map[r["label"]]) for r in bump])
    lang = np.array([r["language"] for r in chunks])
    print(f"BUMP {len(bump)} logs (training), LogChunks-dev {len(chunks)} logs (unseen); {args.added} added per language")
    print(f"{'score':<28} {'threshold':>9} {'LogChunks novel':>15}  still novel after adding (per language)")
    for name, score in (("centroid per class (v1)", centroids), ("nearest training embedding", nearest)):
        oof = np.zeros(len(yb))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(xb, yb):
            oof[te] = score(xb[tr], yb[tr], xb[te])
        t = float(np.percentile(oof, NOVELTY_PERCENTILE))
        flagged = (score(xb, yb, xl) < t).mean()
        adapt = []
        rng = np.random.default_rng(0)  # both scores get the same logs added
        for lg in LANGUAGES:
            idx = np.flatnonzero(lang == lg)
            rng.shuffle(idx)
            add, rest = idx[: args.added], idx[args.added :]
            x2, y2 = np.vstack([xb, xl[add]]), np.concatenate([yb, np.zeros(len(add), int)])
            adapt.append(f"{lg} {(score(xb, yb, xl[rest]) < t).mean():.0%}->{(score(x2, y2, xl[rest]) < t).mean():.0%}")
        print(f"{name:<28} {t:>9.3f} {flagged:>15.1%}  {', '.join(adapt)}")


if __name__ == "__main__":
    main()
