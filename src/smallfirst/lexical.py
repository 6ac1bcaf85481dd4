"""Lexical features of a log: hashed words and word pairs, tf-idf weighted, unit length.

A sentence embedding reads a log as prose, and on real CI logs from tools it never saw it mostly
measures how much a log looks like the training data. The words a failing tool prints (`FAILED`,
`offenses`, `ERESOLVE`, `undefined reference`, `No space left`) carry the label across CI systems
and languages, and a linear model over them transfers to real logs far better. A head reads both:
its logistic regression runs over [lexical tf-idf, scaled embedding] (heads.py, train.py); the
README's "Classifying CI failures" section has the measurements.

Words are lower-cased runs of letters (and `_`, `!` as in `ERR!`) of at least three characters,
so numbers, hashes, timestamps and most of a path never become features; each word and each pair
of neighbouring words is hashed (CRC-32: stable across processes, platforms and Python versions)
into `DIM` buckets. No vocabulary is stored: what a head keeps of a training or learned example is
a sparse vector of bucket counts, from which the words cannot be read back.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

DIM = 1 << 14  # 16,384 buckets: at 4,096, collisions cost 5-8 points of accuracy on real logs
CHARS = 3000  # of the (compressed) log's end: the failure and what led to it
_WORD = re.compile(r"[a-z][a-z_!]{2,}")

Counts = Mapping[int, float]  # bucket -> 1 + log(count)


def bucket_counts(text: str, chars: int = CHARS, dim: int = DIM) -> dict[int, float]:
    """Hashed bucket -> 1 + log(count) for the words and word pairs of `text`'s last `chars`."""
    words = _WORD.findall(text[-chars:].lower())
    counts: dict[int, int] = {}
    for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
        h = zlib.crc32(gram.encode()) % dim
        counts[h] = counts.get(h, 0) + 1
    return {h: 1.0 + float(np.log(c)) for h, c in counts.items()}


@dataclass(frozen=True)
class Rows:
    """Bucket counts of many texts, compressed sparse rows: how a head stores them (no text)."""

    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) int64, each < DIM
    data: np.ndarray  # (nnz,) float64

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def of(cls, rows: Sequence[Counts]) -> "Rows":
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        keys = [sorted(r) for r in rows]
        indices = np.fromiter((h for k in keys for h in k), dtype=np.int64, count=int(indptr[-1]))
        data = np.fromiter((r[h] for r, k in zip(rows, keys) for h in k), dtype=np.float64, count=int(indptr[-1]))
        return cls(indptr, indices, data)

    def row(self, i: int) -> dict[int, float]:
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return dict(zip(self.indices[a:b].tolist(), self.data[a:b].tolist()))

    def take(self, idx: Sequence[int] | np.ndarray) -> "Rows":
        return Rows.of([self.row(int(i)) for i in idx])

    def arrays(self) -> dict[str, np.ndarray]:
        """For np.savez: bucket ids fit uint16 and 1 + log(count) float16."""
        return {"lex_indptr": self.indptr, "lex_indices": self.indices.astype(np.uint16),
                "lex_data": self.data.astype(np.float16)}

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> "Rows":
        indptr = np.asarray(z["lex_indptr"], dtype=np.int64)
        indices = np.asarray(z["lex_indices"], dtype=np.int64)
        data = np.asarray(z["lex_data"], dtype=np.float64)
        if len(indptr) == 0 or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or not indptr[-1] == len(indices) == len(data):
            raise ValueError("lexical rows: inconsistent lex_indptr")
        if len(indices) and int(indices.max()) >= DIM:
            raise ValueError(f"lexical rows: a bucket outside 0..{DIM - 1}")
        return cls(indptr, indices, data)


def counts_matrix(rows: Rows) -> Any:
    """Rows as a scipy CSR matrix of bucket counts (training: scipy comes with scikit-learn)."""
    from scipy.sparse import csr_matrix

    return csr_matrix((rows.data, rows.indices, rows.indptr), shape=(len(rows), DIM))


def idf_of(counts: Any) -> np.ndarray:
    """Smoothed inverse document frequency of each bucket over a counts matrix (scikit-learn's
    formula), so a word every log prints weighs little."""
    df = np.bincount(counts.indices, minlength=DIM)
    return (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Unit-length tf-idf rows of a counts matrix: what `Lexical.logits` computes row by row."""
    from scipy.sparse import csr_matrix, diags

    m = csr_matrix(counts.multiply(idf.astype(np.float64)[None, :]))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return csr_matrix(diags(1.0 / norms) @ m)


@dataclass(frozen=True)
class Lexical:
    """A head's lexical block: idf per bucket (from its training rows) and one weight per label
    and bucket. Its logits add to the embedding's."""

    idf: np.ndarray  # (DIM,) float32
    coef: np.ndarray  # (labels, DIM) float32
    chars: int = CHARS

    def __post_init__(self) -> None:
        if self.idf.shape != (DIM,) or self.coef.ndim != 2 or self.coef.shape[1] != DIM:
            raise ValueError(f"lexical block must be idf ({DIM},), coef (labels, {DIM}); got {self.idf.shape}, {self.coef.shape}")

    def counts(self, text: str) -> dict[int, float]:
        return bucket_counts(text, self.chars)

    def logits(self, rows: Sequence[Counts]) -> np.ndarray:
        """(n, labels): each row's unit tf-idf vector times coef, without building a dense row."""
        out = np.zeros((len(rows), self.coef.shape[0]))
        for i, counts in enumerate(rows):
            if not counts:
                continue
            idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
            v = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * self.idf[idx]
            out[i] = (self.coef[:, idx] @ v) / max(float(np.linalg.norm(v)), 1e-12)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"lex_idf": self.idf.astype(np.float32), "lex_coef": self.coef.astype(np.float32)}

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray], n_labels: int, chars: int) -> "Lexical":
        block = cls(np.asarray(z["lex_idf"], dtype=np.float32), np.asarray(z["lex_coef"], dtype=np.float32), chars)
        if block.coef.shape[0] != n_labels:
            raise ValueError(f"lexical coef has {block.coef.shape[0]} rows for {n_labels} labels")
        return block
