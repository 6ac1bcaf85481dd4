"""Embedding classifier: all-MiniLM-L6-v2, zero-shot or with a trained head.

The model, its pin and the numpy float32 reference encoder are in minilm.py. The backend runs the
same model with int8 weights on ONNX Runtime (minilm_onnx.py), for a quarter of the CPU.

Two ways to answer a labelled task:
- zero-shot: cosine between the input and each label's description, softmaxed;
- trained: a head (JSON artifact from `smallfirst train`) with logistic-regression weights, a
  calibrator for the top probability and a novelty threshold on similarity to the training
  embeddings (smallfirst.heads).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from smallfirst.backends.base import BackendError
from smallfirst.backends.minilm import MINILM_SHA256, MODEL_NAME, MiniLMEncoder
from smallfirst.backends.minilm_onnx import GRAPH_SHA256, OnnxMiniLMEncoder
from smallfirst.heads import DEFAULT_WINDOW, EMBEDDING_DIM, Head, HeadError, Window, load_head
from smallfirst.tasks import LocalOutput

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, Policy, TaskSpec

# Zero-shot cosines between a text and short label descriptions sit within ~0.1 of each other;
# a temperature of 0.05 turns a 0.1 gap into a ~7x odds ratio instead of a near-uniform softmax.
ZERO_SHOT_TEMPERATURE = 0.05
_MAX_HEADS = 8  # trained heads kept loaded per backend


# ---------------------------------------------------------------- reading long text


def embed_texts(encoder: MiniLMEncoder, texts: Sequence[str], window: Window) -> tuple[np.ndarray, list[int]]:
    """Unit vectors (n, 384) for `texts` read through `window`, and the tokens each one used."""
    ids = _last_ids(encoder, texts) if window.strategy == "last" else encoder.token_ids_batch(texts)
    cut = [window.cut(x) for x in ids]
    flat = [w for windows in cut for w in windows]
    vectors = encoder.encode_ids(flat)
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    tokens: list[int] = []
    pos = 0
    for i, windows in enumerate(cut):
        v = vectors[pos : pos + len(windows)].mean(axis=0)
        out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        tokens.append(sum(len(w) + 2 for w in windows))
        pos += len(windows)
    return out, tokens


# The last window reads only the end of a text, and word pieces never span a space or a newline:
# the tail of a text from a space on gives the same final word pieces as the whole text, and
# tokenising 2,000 characters instead of a 4,000-character log saves about 1 ms of a 10 ms call.
_TAIL_CHARS = 2000
_SPACE = re.compile(r"[ \n]")


def _last_ids(encoder: MiniLMEncoder, texts: Sequence[str]) -> list[list[int]]:
    """Word pieces of each text, enough of its end for a last window (the whole text when its
    tail is too short to fill one)."""
    tails = []
    for text in texts:
        space = _SPACE.search(text, len(text) - _TAIL_CHARS) if len(text) > _TAIL_CHARS else None
        tails.append(text[space.start():] if space else text)
    ids = encoder.token_ids_batch(tails)
    short = [i for i, x in enumerate(ids) if len(x) < encoder.max_body and tails[i] is not texts[i]]
    for i, whole in zip(short, encoder.token_ids_batch([texts[i] for i in short]) if short else []):
        ids[i] = whole
    return ids


# ---------------------------------------------------------------- backend


def embedding_identity(sha256: str, window: Window) -> str:
    """Which encoder read a text, and how: embeddings are comparable only within one identity."""
    w = window.to_dict()
    return f"{MODEL_NAME}@{sha256[:16]}/{w['strategy']}" + (f"{w['max_windows']}" if "max_windows" in w else "")


# Without a head there is no cross-validated choice; averaging the windows reads a text evenly,
# and four windows (about 4,000 characters, the log compressor's budget) bound the latency.
ZERO_SHOT_WINDOW = Window("mean", 4)
_shared_encoders: dict[tuple[str | None, str, int | None], MiniLMEncoder] = {}
_shared_lock = threading.Lock()


def shared_encoder(model_dir: Path | str | None = None, sha256: str = MINILM_SHA256, threads: int | None = None) -> MiniLMEncoder:
    """One encoder per (folder, pin, threads) in the process: its weights are loaded once. The
    int8 ONNX Runtime path (minilm_onnx.py, `threads` per call, default one per core) wherever a
    graph is pinned for the model, as for the bundled one; the numpy reference path otherwise.
    Training and serving both come here, so a head is trained on the path that serves it."""
    key = (str(model_dir) if model_dir is not None else None, sha256.lower(), threads)
    with _shared_lock:
        enc = _shared_encoders.get(key)
        if enc is None:
            fast = sha256.lower() in GRAPH_SHA256
            enc = OnnxMiniLMEncoder(model_dir, sha256, threads=threads) if fast else MiniLMEncoder(model_dir, sha256)
            _shared_encoders[key] = enc
        return enc


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class EmbeddingBackend:
    """LocalBackend for labelled tasks on all-MiniLM-L6-v2 (zero-shot or with a trained head)."""

    def __init__(self, spec: "ModelSpec", policy: "Policy"):
        self.spec = spec
        self.policy = policy
        self.name = spec.name or MODEL_NAME
        if spec.path:
            model_dir = policy.resolve_path(spec.path)
            if not spec.sha256:
                raise BackendError(f"model {self.name}: a custom path needs sha256 (the pin of model.safetensors)")
            self.encoder = shared_encoder(model_dir, spec.sha256, spec.threads)
        else:
            self.encoder = shared_encoder(threads=spec.threads)
        self.sha256: str | None = self.encoder.sha256
        self._lock = threading.Lock()
        self._label_vectors: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
        self._heads: OrderedDict[Path, Head] = OrderedDict()

    def load(self) -> None:
        """Load (and hash-check) the weights and every trained head the policy names, ahead of
        the first request."""
        self.encoder.load()
        for spec in self.policy.tasks.values():
            if spec.head and spec.model and self.policy.models.get(spec.model) is self.spec:
                self._head(spec)

    async def complete(self, text: str, spec: "TaskSpec") -> LocalOutput:
        return await asyncio.to_thread(self.complete_sync, text, spec)

    def complete_sync(self, text: str, spec: "TaskSpec") -> LocalOutput:
        if not spec.labels:
            raise BackendError(f"task {spec.name!r}: the embedding classifier answers labelled tasks only")
        if spec.head:
            return self._trained(text, spec, self._head(spec))
        return self._zero_shot(text, spec)

    def _head(self, spec: "TaskSpec") -> Head:
        assert spec.head is not None
        path = self.policy.resolve_path(spec.head)
        with self._lock:
            head = self._heads.get(path)
            if head is not None:
                self._heads.move_to_end(path)
        if head is None:
            try:
                head = load_head(path, embedding_sha256=self.encoder.sha256)
            except HeadError as exc:
                raise BackendError(str(exc)) from None
            stray = [lbl for lbl in head.labels if lbl not in spec.labels]
            if stray:
                raise BackendError(f"{path}: head labels {stray} are not labels of task {spec.name!r} {spec.labels}")
            with self._lock:
                self._heads[path] = head
                # Learn runs add heads over a service's life; the few in use are the recent ones.
                while len(self._heads) > _MAX_HEADS:
                    self._heads.popitem(last=False)
        return head

    def _zero_shot(self, text: str, spec: "TaskSpec") -> LocalOutput:
        key = (spec.name, tuple(spec.labels))
        with self._lock:
            label_vecs = self._label_vectors.get(key)
        if label_vecs is None:
            descriptions = [spec.label_descriptions.get(lbl, lbl) for lbl in spec.labels]
            label_vecs = self.encoder.encode(descriptions)
            with self._lock:
                self._label_vectors[key] = label_vecs
        vec, tokens = embed_texts(self.encoder, [text], ZERO_SHOT_WINDOW)
        cosines = label_vecs @ vec[0]
        probs = _softmax(cosines / ZERO_SHOT_TEMPERATURE)
        top = int(np.argmax(probs))
        return LocalOutput(
            answer=spec.labels[top],
            model=self.name,
            label=spec.labels[top],
            scores={lbl: float(p) for lbl, p in zip(spec.labels, probs)},
            confidence=float(probs[top]),
            confidence_raw=float(probs[top]),
            model_sha256=self.sha256,
            tokens_in=tokens[0],
            extra={"mode": "zero_shot", "calibrated": False, "cosine": float(cosines[top])},
        )

    def embed(self, text: str, spec: "TaskSpec") -> tuple[np.ndarray, str]:
        """The embedding the task's head reads for `text` (as the router hands it over), and the
        identity of that reading (smallfirst.learn keeps examples per identity)."""
        window = self._head(spec).window if spec.head else DEFAULT_WINDOW
        vec, _ = embed_texts(self.encoder, [text], window)
        return vec[0], embedding_identity(self.encoder.sha256, window)

    def _trained(self, text: str, spec: "TaskSpec", head: Head) -> LocalOutput:
        vec, tokens = embed_texts(self.encoder, [text], head.window)
        words = head.word_counts([text])
        probs = head.probabilities(vec, words)[0]
        similarity = float(head.similarity(vec)[0])
        top = int(np.argmax(probs))
        label = head.labels[top]
        raw = float(probs[top])
        by_label = dict(zip(head.labels, probs.tolist()))
        return LocalOutput(
            answer=label,
            model=self.name,
            label=label,
            # Labels of the task the head never saw were never predicted: probability 0.
            scores={lbl: float(by_label.get(lbl, 0.0)) for lbl in spec.labels},
            confidence=float(head.calibrator(raw)),
            confidence_raw=raw,
            model_sha256=self.sha256,
            tokens_in=tokens[0],
            novel=similarity < head.novelty_threshold,
            extra={
                "mode": "trained",
                "calibrated": head.calibrator.kind != "identity",
                "calibrator": head.calibrator.kind,
                "similarity": similarity,
                "novelty_threshold": head.novelty_threshold,
                "min_confidence": head.floors(vec)[0],
                # For smallfirst.learn: an escalated input's embedding is kept without computing it again.
                "embedding": vec[0],
                "embedding_identity": embedding_identity(self.encoder.sha256, head.window),
                **({"words": words[0]} if words is not None else {}),
            },
        )
