"""Trained classifier heads: the artifact `smallfirst train` and `smallfirst learn` write and the
embedding backend applies.

A head is two files side by side:

- `<name>.json`, plain JSON (a router must not execute data, so no pickle): multinomial
  logistic-regression weights over all-MiniLM-L6-v2 embeddings and how much a vote of the nearest
  training embeddings counts beside them, a calibrator for the top probability, the novelty
  threshold, how long text is read, and where it all came from;
- `<name>.npz`, numpy arrays loaded with `allow_pickle=False`: the embeddings the head was trained
  on (float16), their labels, and whether each came from the training file (`base`) or was learned
  from an escalation (`learned`); for a head with a lexical block (lexical.py), its idf and
  weights per label and bucket, and each example's hashed bucket counts. No text.

Those embeddings do three jobs. Their nearest ones vote on the label (NeighbourVote). They are
the novelty index: an input is novel when even its k-th
nearest training embedding is far away, so inputs like newly learned examples stop being novel as
soon as a head is trained on them (a per-class centroid could never do that for a new cluster
inside a class). And they are the base data of `smallfirst learn`, which trains the next head on
them plus the kept examples without re-embedding thousands of texts.

The JSON pins the .npz by sha256 and carries the sha256 of its own content, so `load_head`
refuses a head that was truncated, corrupted or edited by hand, naming the file. Format 1 heads
(centroid novelty, no .npz) still load and serve; `smallfirst learn` needs format 2.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from smallfirst.calibration import Calibrator
from smallfirst.lexical import Counts, Lexical, Rows

HEAD_FORMAT = "smallfirst-head/2"
HEAD_FORMAT_V1 = "smallfirst-head/1"
EMBEDDING_DIM = 384
MAX_SEQ_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
ORIGINS = ("base", "learned")
# What the hard stops said of a training example's text (index 0: nothing), so a learn run's
# release gate treats the head's own training data as the router would: a stopped case escalates.
STOPS = ("", "security", "access", "production", "novel")


class HeadError(Exception):
    """A head artifact that cannot be used; `str()` names the file and what is wrong."""


# ---------------------------------------------------------------- reading long text


@dataclass(frozen=True)
class Window:
    """How a text longer than one 256-token window is read. Stored in every head, so training
    and inference read text the same way.

    strategy: "first" reads the first 256 tokens (what sentence-transformers does); "last" the
    last 256; "mean" averages the embeddings of consecutive 256-token windows, the last
    `max_windows` of them when there are more (a CI log ends where the build failed).
    """

    strategy: Literal["first", "last", "mean"] = "mean"
    max_windows: int = 8

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"strategy": self.strategy, "tokens": MAX_SEQ_TOKENS}
        if self.strategy == "mean":
            d["max_windows"] = self.max_windows
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Window":
        if d.get("strategy") not in ("first", "last", "mean"):
            raise ValueError(f"unknown window strategy {d.get('strategy')!r}")
        if int(d.get("tokens", MAX_SEQ_TOKENS)) != MAX_SEQ_TOKENS:
            raise ValueError(f"window tokens must be {MAX_SEQ_TOKENS}")
        return cls(strategy=d["strategy"], max_windows=int(d.get("max_windows", 8)))

    def cut(self, ids: Sequence[int]) -> list[list[int]]:
        """Word-piece ids -> the windows (at most 254 ids each, before [CLS]/[SEP]) to embed."""
        body = MAX_SEQ_TOKENS - 2
        if self.strategy == "first":
            return [list(ids[:body])]
        if self.strategy == "last":
            return [list(ids[-body:])]  # the last full window, not a short remainder
        windows = [list(ids[i : i + body]) for i in range(0, len(ids), body)] or [[]]
        return windows[-self.max_windows :]

    def describe(self) -> str:
        if self.strategy == "mean":
            return f"the mean of up to {self.max_windows} 256-token windows"
        return f"the {self.strategy} 256 tokens"


# How a head reads text, chosen by 5-fold CV on BUMP's 570 Maven logs (compressed to 4000
# characters): the last 254 tokens 0.989 accuracy, the mean of all windows 0.981, the first
# window 0.938, first and last concatenated 0.985, the last two windows 0.988. A CI log ends
# where the build failed, and one window is also the cheapest. Stored in every head;
# also how a task that learns before it has any head reads text.
DEFAULT_WINDOW = Window("last")


# ---------------------------------------------------------------- training embeddings


@dataclass(frozen=True)
class Examples:
    """Embeddings a head was trained on: x (n, 384) unit vectors, y indexes the head's labels,
    origin indexes ORIGINS."""

    x: np.ndarray
    y: np.ndarray
    origin: np.ndarray
    lex: Rows | None = None  # each example's lexical bucket counts, for a head that reads them
    stop: np.ndarray | None = None  # (n,) index into STOPS: the hard stop its text triggered

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.x.ndim != 2 or self.x.shape[1] != EMBEDDING_DIM or self.y.shape != (n,) or self.origin.shape != (n,):
            raise ValueError(f"examples must be x (n, {EMBEDDING_DIM}), y (n,), origin (n,); got "
                             f"{self.x.shape}, {self.y.shape}, {self.origin.shape}")
        if self.lex is not None and len(self.lex) != n:
            raise ValueError(f"{len(self.lex)} lexical rows for {n} examples")
        if self.stop is not None and (self.stop.shape != (n,) or (n and not 0 <= int(self.stop.min()) <= int(self.stop.max()) < len(STOPS))):
            raise ValueError(f"hard-stop flags must be (n,) indexes into {STOPS}")

    def hard_stops(self) -> list[str | None]:
        """The hard-stop category each example's text triggered, or None (also when not recorded)."""
        if self.stop is None:
            return [None] * len(self)
        return [STOPS[int(i)] or None for i in self.stop]

    def __len__(self) -> int:
        return len(self.x)

    @property
    def base(self) -> "Examples":
        keep = self.origin == ORIGINS.index("base")
        lex = None if self.lex is None else self.lex.take(np.flatnonzero(keep))
        return Examples(self.x[keep], self.y[keep], self.origin[keep], lex, None if self.stop is None else self.stop[keep])

    def arrays(self) -> dict[str, np.ndarray]:
        # float16 halves the file; a cosine moves by < 1e-3, far inside any threshold's margin.
        out = {"x": self.x.astype(np.float16), "y": self.y.astype(np.int16), "origin": self.origin.astype(np.int8)}
        if self.stop is not None:
            out["stop"] = self.stop.astype(np.int8)
        return out if self.lex is None else {**out, **self.lex.arrays()}

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray], n_labels: int) -> "Examples":
        x, y, origin = z["x"].astype(np.float32), z["y"].astype(np.int64), z["origin"].astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= n_labels):
            raise ValueError(f"labels index outside the head's {n_labels} labels")
        if len(origin) and (origin.min() < 0 or origin.max() >= len(ORIGINS)):
            raise ValueError("origin outside base/learned")
        stop = z["stop"].astype(np.int64) if "stop" in z else None
        return cls(x, y, origin, Rows.from_arrays(z) if "lex_indptr" in z else None, stop)


# ---------------------------------------------------------------- novelty


@dataclass(frozen=True)
class Novelty:
    """Out-of-distribution signal: the cosine of an input to its k-th nearest prototype; below
    `threshold` the input is novel.

    Format 2: the prototypes are the training embeddings themselves (`knn`). Format 1: one
    centroid per label (`centroid`, k = 1), kept so old heads still load.
    """

    method: Literal["knn", "centroid"]
    k: int
    threshold: float
    percentile: float
    prototypes: np.ndarray  # (m, 384) unit vectors

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """(n, 384) embeddings -> (n,) cosine to the k-th nearest prototype."""
        return kth_similarity(np.asarray(x, dtype=np.float32), self.prototypes, self.k)


@dataclass(frozen=True)
class NeighbourVote:
    """The head's second opinion: its k nearest training embeddings vote for their labels,
    each weighted by exp((cosine - 1) / temperature); the head's probabilities are the mix
    (1 - weight) * logistic regression + weight * vote. On kinds of input a head has few
    examples of, the neighbours know better than a linear boundary fitted mostly to other kinds:
    with 400 generated failures of other ecosystems added to BUMP, accuracy on the 60% most
    confident of 300 unseen ones rose from 0.950 (weight 0) to 0.978 (weight 0.4), and BUMP's own
    cross-validated accuracy stayed at 0.989 (it fell to 0.984 at weight 0.5)."""

    k: int = 5
    temperature: float = 0.05
    weight: float = 0.4

    def probabilities(self, x: np.ndarray, examples: "Examples", n_labels: int) -> np.ndarray:
        s = np.asarray(x, dtype=np.float32) @ examples.x.T
        k = min(self.k, s.shape[1])
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        w = np.exp((np.take_along_axis(s, idx, axis=1).astype(np.float64) - 1.0) / self.temperature)
        votes = np.zeros((len(s), n_labels))
        np.add.at(votes, (np.repeat(np.arange(len(s)), k), examples.y[idx].ravel()), w.ravel())
        return votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-300)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NeighbourVote":
        vote = cls(int(d["k"]), float(d["temperature"]), float(d["weight"]))
        if vote.k < 1 or vote.temperature <= 0 or not 0.0 <= vote.weight <= 1.0:
            raise ValueError(f"neighbours needs k >= 1, temperature > 0, 0 <= weight <= 1; got {dict(d)}")
        return vote


def kth_similarity(x: np.ndarray, prototypes: np.ndarray, k: int) -> np.ndarray:
    s = x @ prototypes.T
    k = min(k, s.shape[1])
    if k == 1:
        return s.max(axis=1).astype(np.float64)
    return np.partition(s, -k, axis=1)[:, -k].astype(np.float64)


# ---------------------------------------------------------------- the head


@dataclass(frozen=True)
class Head:
    task: str
    labels: tuple[str, ...]
    coef: np.ndarray  # (labels, 384)
    intercept: np.ndarray  # (labels,)
    calibrator: Calibrator
    novelty: Novelty
    window: Window
    embedding_sha256: str
    examples: Examples | None = None  # format 2 only
    provenance: Mapping[str, Any] = field(default_factory=dict)
    cv: Mapping[str, Any] = field(default_factory=dict)
    format: str = HEAD_FORMAT
    content_sha256: str = ""  # of the JSON as loaded or written
    # The lowest confidence at which this head's answers on inputs like its learned examples may
    # be used, when its own evidence says more than the policy's min_confidence (a learned head:
    # smallfirst.learn; see floors()). None: no floor.
    min_confidence: float | None = None
    neighbours: NeighbourVote | None = None  # format 2
    # Words the log prints, beside its embedding (lexical.py). The embedding's coef was fitted
    # on embeddings scaled by `embedding_weight` and is stored with that scale folded in.
    lexical: Lexical | None = None
    embedding_weight: float = 1.0

    @property
    def reads_words(self) -> bool:
        return self.lexical is not None

    def word_counts(self, texts: Sequence[str]) -> list[Counts] | None:
        """What `probabilities` needs beside the embeddings of `texts`: their bucket counts, or
        None for a head without a lexical block."""
        return None if self.lexical is None else [self.lexical.counts(t) for t in texts]

    @property
    def novelty_threshold(self) -> float:
        return self.novelty.threshold

    def probabilities(self, x: np.ndarray, words: Sequence[Counts] | None = None) -> np.ndarray:
        """(n, 384) embeddings, and for a head with a lexical block the same inputs' bucket counts
        (`word_counts`), -> (n, labels) probabilities."""
        z = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        if self.lexical is not None:
            if words is None or len(words) != len(z):
                raise ValueError("this head reads words beside embeddings: pass word_counts(texts)")
            z += self.lexical.logits(words)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        if self.neighbours is None or self.examples is None:
            return p
        w = self.neighbours.weight
        return (1.0 - w) * p + w * self.neighbours.probabilities(x, self.examples, len(self.labels))

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """Novelty similarity of each embedding: low means unlike anything the head was trained on."""
        return self.novelty.similarity(x)

    def floors(self, x: np.ndarray) -> list[float | None]:
        """The head's own min_confidence for each embedding, or None. It holds where the nearest
        training embedding is a learned one: it was measured on inputs like those, and the base
        data's own evidence stands for the rest."""
        if self.min_confidence is None or self.examples is None or not (self.examples.origin == 1).any():
            return [None] * len(x)
        nearest = (np.asarray(x, dtype=np.float32) @ self.examples.x.T).argmax(axis=1)
        return [self.min_confidence if self.examples.origin[i] == 1 else None for i in nearest]

    def arrays(self) -> dict[str, np.ndarray]:
        """What the .npz beside the JSON holds."""
        assert self.examples is not None
        return self.examples.arrays() if self.lexical is None else {**self.examples.arrays(), **self.lexical.arrays()}

    def to_dict(self, examples_file: str, examples_sha256: str) -> dict[str, Any]:
        assert self.examples is not None
        counts = {o: int((self.examples.origin == i).sum()) for i, o in enumerate(ORIGINS)}
        lexical = None if self.lexical is None else {
            "features": "hashed words and word pairs, tf-idf, unit length (smallfirst.lexical)",
            "buckets": int(self.lexical.idf.shape[0]),
            "chars": self.lexical.chars,
            "embedding_weight": self.embedding_weight,
        }
        return {
            "format": HEAD_FORMAT,
            "task": self.task,
            "labels": list(self.labels),
            "embedding_model": "all-MiniLM-L6-v2",
            "embedding_sha256": self.embedding_sha256,
            "window": self.window.to_dict(),
            "coef": _rounded(self.coef),
            "intercept": _rounded(self.intercept),
            "calibrator": self.calibrator.to_dict(),
            "neighbours": None if self.neighbours is None else self.neighbours.to_dict(),
            "lexical": lexical,
            "min_confidence": None if self.min_confidence is None else round(self.min_confidence, 6),
            "novelty": {
                "method": "cosine to the k-th nearest training embedding",
                "k": self.novelty.k,
                "percentile": self.novelty.percentile,
                "threshold": round(self.novelty.threshold, 6),
            },
            "examples": {"file": examples_file, "sha256": examples_sha256, "n": len(self.examples), **counts},
            "provenance": dict(self.provenance),
            "cv": dict(self.cv),
        }


def _rounded(a: np.ndarray) -> Any:
    # 7 decimals is below float32 resolution of these values, and halves the file.
    return np.round(np.asarray(a, dtype=np.float64), 7).tolist()


def _content_sha256(d: Mapping[str, Any]) -> str:
    body = {k: v for k, v in d.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def examples_path(head_path: str | Path) -> Path:
    p = Path(head_path)
    return p.with_suffix(".npz")


def write_head(head: Head, path: str | Path) -> Head:
    """Write `<path>` and its `.npz` beside it; both land whole or not at all (temporary files,
    then renames: the .npz first, so a JSON on disk never points at a missing one). Returns the
    head with its content hash."""
    if head.examples is None:
        raise ValueError("a format 2 head needs the examples it was trained on")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    npz = examples_path(p)
    buf = io.BytesIO()
    # Compressed: the word counts of 5,000 training logs are 5 MB raw, 2 MB deflated.
    np.savez_compressed(buf, **head.arrays())
    data = buf.getvalue()
    d = head.to_dict(npz.name, hashlib.sha256(data).hexdigest())
    d["content_sha256"] = _content_sha256(d)
    _atomic_write(npz, data)
    _atomic_write(p, (_dump(d) + "\n").encode("utf-8"))
    return replace(head, content_sha256=d["content_sha256"], format=HEAD_FORMAT)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _dump(value: Any, indent: str = "") -> str:
    """JSON with one key a line, and every list of numbers on a single line: a head stays
    readable in a diff instead of spreading 2,000 coefficients over 2,000 lines."""
    if isinstance(value, dict) and value:
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return json.dumps(value, ensure_ascii=False)


def head_sha256(path: str | Path) -> str:
    """The content hash a head declares (format 2), or the file's sha256 (format 1)."""
    p = Path(path)
    raw = p.read_bytes()
    try:
        d = json.loads(raw)
        if isinstance(d, dict) and isinstance(d.get("content_sha256"), str):
            return d["content_sha256"]
    except ValueError:
        pass
    return hashlib.sha256(raw).hexdigest()


def load_head(path: str | Path, *, embedding_sha256: str | None = None) -> Head:
    """Read and verify a head. With `embedding_sha256`, refuse one trained on another encoder (the
    `sha256` of the encoder that serves it: the int8 graph's for the bundled model). Every
    refusal is a HeadError naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise HeadError(f"{p}: cannot read head: {exc.strerror or exc}") from None
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeadError(f"{p}: not a JSON head artifact (corrupt or truncated?): {exc}") from None
    fmt = d.get("format") if isinstance(d, dict) else type(d).__name__
    if fmt not in (HEAD_FORMAT, HEAD_FORMAT_V1):
        raise HeadError(f"{p}: format is {fmt!r}, expected {HEAD_FORMAT!r} (or the older {HEAD_FORMAT_V1!r})")
    if fmt == HEAD_FORMAT:
        declared = d.get("content_sha256")
        actual = _content_sha256(d)
        if declared != actual:
            raise HeadError(f"{p}: content hash mismatch (declared {str(declared)[:16]}..., computed {actual[:16]}...): "
                            "the file was changed after it was written; retrain it or restore it")
    if embedding_sha256 is not None and d.get("embedding_sha256") != embedding_sha256:
        raise HeadError(
            f"{p}: head was trained on encoder sha256 {d.get('embedding_sha256')}, "
            f"but this encoder is {embedding_sha256}; retrain the head (smallfirst train)"
        )
    try:
        labels = tuple(str(x) for x in d["labels"])
        coef = np.asarray(d["coef"], dtype=np.float64)
        intercept = np.asarray(d["intercept"], dtype=np.float64)
        nov = d["novelty"]
        window = Window.from_dict(d["window"])
        calibrator = Calibrator.from_dict(d["calibrator"])
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise HeadError(f"{p}: invalid head: {missing}") from None
    floor = d.get("min_confidence")
    if floor is not None and not (isinstance(floor, (int, float)) and 0.0 <= floor <= 1.0):
        raise HeadError(f"{p}: min_confidence must be a probability, got {floor!r}")
    k = len(labels)
    if k < 2 or len(set(labels)) != k:
        raise HeadError(f"{p}: labels must be at least two distinct names, got {list(labels)}")
    for name, arr, shape in (("coef", coef, (k, EMBEDDING_DIM)), ("intercept", intercept, (k,))):
        if arr.shape != shape:
            raise HeadError(f"{p}: {name} has shape {arr.shape}, expected {shape}")
    examples, neighbours, lexical = None, None, None
    try:
        if fmt == HEAD_FORMAT_V1:
            centroids = np.asarray(nov["centroids"], dtype=np.float32)
            if centroids.shape != (k, EMBEDDING_DIM):
                raise HeadError(f"{p}: novelty.centroids has shape {centroids.shape}, expected {(k, EMBEDDING_DIM)}")
            novelty = Novelty("centroid", 1, float(nov["threshold"]), float(nov.get("percentile", 1.0)), centroids)
        else:
            examples, lexical = _load_examples(p, d["examples"], k, d.get("lexical"))
            novelty = Novelty("knn", int(nov["k"]), float(nov["threshold"]), float(nov["percentile"]), examples.x)
            neighbours = NeighbourVote.from_dict(d["neighbours"]) if d.get("neighbours") else None
            if novelty.k < 1:
                raise HeadError(f"{p}: novelty.k must be at least 1")
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise HeadError(f"{p}: invalid head: {missing}") from None
    return Head(
        task=str(d.get("task", "")),
        labels=labels,
        coef=coef,
        intercept=intercept,
        calibrator=calibrator,
        novelty=novelty,
        window=window,
        embedding_sha256=str(d.get("embedding_sha256")),
        examples=examples,
        provenance=d.get("provenance", {}),
        cv=d.get("cv", {}),
        format=fmt,
        content_sha256=str(d.get("content_sha256") or hashlib.sha256(raw).hexdigest()),
        min_confidence=floor,
        neighbours=neighbours,
        lexical=lexical,
        embedding_weight=float((d.get("lexical") or {}).get("embedding_weight", 1.0)),
    )


def _load_examples(head: Path, ref: Mapping[str, Any], n_labels: int,
                   lexical: Mapping[str, Any] | None) -> tuple[Examples, Lexical | None]:
    npz = head.parent / str(ref["file"])
    if npz.parent != head.parent:
        raise HeadError(f"{head}: examples file {ref['file']!r} must sit beside the head")
    try:
        data = npz.read_bytes()
    except OSError as exc:
        raise HeadError(f"{head}: cannot read its examples file {npz}: {exc.strerror or exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.get("sha256"):
        raise HeadError(f"{head}: examples file {npz} has sha256 {actual[:16]}..., the head pins "
                        f"{str(ref.get('sha256'))[:16]}...; it belongs to another head or was changed")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        examples = Examples.from_arrays(arrays, n_labels)
        block = None if lexical is None else Lexical.from_arrays(arrays, n_labels, int(lexical["chars"]))
    except (ValueError, KeyError, OSError, EOFError) as exc:  # np.load's errors for a bad archive
        raise HeadError(f"{npz}: invalid examples file: {exc}") from None
    if len(examples) == 0:
        raise HeadError(f"{npz}: no examples")
    if block is not None and examples.lex is None:
        raise HeadError(f"{npz}: the head reads words but its examples carry no bucket counts")
    return examples, block
