"""Heads that read words: hashed word counts beside the embedding (smallfirst.lexical).

What must hold: the counts are the same in every process (a head trained here serves elsewhere),
the numpy path a head serves with computes what scikit-learn fitted, the words travel with the
head and its learned examples, and a head that reads words is never fed embeddings alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from smallfirst.backends.embedding import embedding_identity, shared_encoder
from smallfirst.heads import DEFAULT_WINDOW, HeadError, load_head, write_head
from smallfirst.learn import run_learn
from smallfirst.learn_store import LearnStore
from smallfirst.lexical import DIM, Lexical, Rows, bucket_counts, counts_matrix, idf_of, tfidf
from smallfirst.policy import load_policy
from smallfirst.train import EMBEDDING_WEIGHT, fit_head

ENCODER = shared_encoder().sha256
LABELS = ["build", "test", "dependency", "unknown"]


def test_counts_are_the_words_and_word_pairs_of_the_logs_end_only():
    counts = bucket_counts("npm ERR! code ERESOLVE\nnpm ERR! could not resolve 1234 0x7f3a2")
    # npm, err!, code, eresolve, npm, err!, could, not, resolve: 7 distinct words and 7 distinct
    # pairs ("npm err!" twice); numbers, and runs of under three letters, never count.
    assert 13 <= len(counts) <= 14 and all(0 <= b < DIM for b in counts)
    assert max(counts.values()) == pytest.approx(1 + np.log(2))  # "npm" and "err!" twice
    assert bucket_counts("head words " + "1" * 5000 + " tail words here", chars=20) == bucket_counts("tail words here")
    assert bucket_counts("1234 5678 :: //") == {}


def test_counts_are_the_same_in_another_process():
    text = "error[E0599]: no method named `copied` found for type Option in the current scope"
    here = bucket_counts(text)
    code = f"import json; from smallfirst.lexical import bucket_counts; print(json.dumps(bucket_counts({text!r})))"
    there = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                      env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout)
    assert {int(k): v for k, v in there.items()} == here


def test_rows_survive_their_arrays_and_refuse_a_bucket_out_of_range():
    rows = Rows.of([bucket_counts("cannot find symbol class Foo"), {}, bucket_counts("tests failed: 3")])
    back = Rows.from_arrays(rows.arrays())
    assert [back.row(i).keys() for i in range(3)] == [rows.row(i).keys() for i in range(3)]
    assert back.row(2) == pytest.approx(rows.row(2), abs=1e-3)  # float16 on disk
    bad = {**rows.arrays(), "lex_indices": np.array([DIM] * len(rows.indices), dtype=np.int64)}
    with pytest.raises(ValueError, match="bucket outside"):
        Rows.from_arrays(bad)


def test_the_served_logits_are_what_the_training_matrix_computes():
    texts = ["BUILD FAILURE cannot find symbol", "Tests run: 5, Failures: 2", "could not resolve dependencies", ""]
    rows = Rows.of([bucket_counts(t) for t in texts])
    counts = counts_matrix(rows)
    idf = idf_of(counts)
    coef = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    block = Lexical(idf, coef)
    expected = tfidf(counts, idf) @ coef.T.astype(np.float64)
    assert np.allclose(block.logits([rows.row(i) for i in range(len(texts))]), expected, atol=1e-5)


# ---------------------------------------------------------------- a head that reads words


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Kinds:
    """Kinds of log: a cluster of embeddings and a vocabulary each."""

    VOCAB = {0: "compilation error cannot find symbol javac", 1: "tests failed assertion expected actual",
             2: "could not resolve dependency version conflict", 3: "pytest collected failed assert error"}

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.centres = unit(self.rng.normal(size=(4, 384)))

    def sample(self, kind: int, n: int) -> tuple[np.ndarray, list[dict[int, float]]]:
        x = unit(self.centres[kind] + 0.6 * unit(self.rng.normal(size=(n, 384)))).astype(np.float32)
        words = self.VOCAB[kind].split()
        texts = [" ".join(self.rng.choice(words, size=8)) + f" noise{'abc'[i % 3]}" for i in range(n)]
        return x, [bucket_counts(t) for t in texts]


def test_a_head_that_reads_words_round_trips_and_serves_what_sklearn_fitted(tmp_path):
    kinds = Kinds()
    parts = [kinds.sample(k, 30) for k in range(3)]
    x = np.vstack([p[0] for p in parts])
    words = Rows.of([w for p in parts for w in p[1]])
    y = np.repeat(np.arange(3), 30)
    fit = fit_head(x, y, LABELS[:3], task="triage", embedding_sha256=ENCODER, folds=5, words=words)
    head = fit.head
    assert head.reads_words and head.neighbours is None and head.embedding_weight == EMBEDDING_WEIGHT
    probe_x, probe_w = kinds.sample(1, 10)

    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    from smallfirst.train import WORDS_C

    counts = counts_matrix(words)
    idf = idf_of(counts)
    model = LogisticRegression(C=WORDS_C, class_weight="balanced", max_iter=5000).fit(
        hstack([tfidf(counts, idf), csr_matrix(x * EMBEDDING_WEIGHT)]).tocsr(), y)
    design = hstack([tfidf(counts_matrix(Rows.of(probe_w)), idf), csr_matrix(probe_x * EMBEDDING_WEIGHT)]).tocsr()
    assert np.allclose(head.probabilities(probe_x, probe_w), model.predict_proba(design), atol=1e-6)

    written = write_head(head, tmp_path / "triage.json")
    loaded = load_head(tmp_path / "triage.json", embedding_sha256=ENCODER)
    assert loaded.content_sha256 == written.content_sha256 and loaded.reads_words
    assert np.allclose(loaded.probabilities(probe_x, probe_w), head.probabilities(probe_x, probe_w), atol=1e-4)
    assert [loaded.labels[i] for i in loaded.probabilities(probe_x, probe_w).argmax(axis=1)] == ["test"] * 10
    with pytest.raises(ValueError, match="reads words"):
        loaded.probabilities(probe_x)


def test_a_head_whose_npz_lost_its_word_weights_is_refused(tmp_path):
    kinds = Kinds()
    parts = [kinds.sample(k, 20) for k in range(3)]
    fit = fit_head(np.vstack([p[0] for p in parts]), np.repeat(np.arange(3), 20), LABELS[:3], task="triage",
                   embedding_sha256=ENCODER, words=Rows.of([w for p in parts for w in p[1]]))
    write_head(fit.head, tmp_path / "h.json")
    npz = tmp_path / "h.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files if k != "lex_coef"}
    np.savez(npz, **arrays)
    with pytest.raises(HeadError, match="h.npz"):  # the pin, before anything is read
        load_head(tmp_path / "h.json")


POLICY = """\
version: 1
models:
  clf: {provider: embedding}
tasks:
  triage:
    description: Why did the build fail?
    model: clf
    labels: [build, test, dependency, unknown]
    escalate_labels: [unknown]
    min_confidence: 0.7
    head: heads/triage.json
    learn: {min_examples: 10, promote: gate, max_false_accept: 0.1}
"""


def test_learning_a_new_kind_keeps_its_words_and_the_learned_head_reads_them(tmp_path):
    kinds = Kinds()
    parts = [kinds.sample(k, 40) for k in range(3)]
    fit = fit_head(np.vstack([p[0] for p in parts]), np.repeat(np.arange(3), 40), LABELS[:3], task="triage",
                   embedding_sha256=ENCODER, words=Rows.of([w for p in parts for w in p[1]]))
    write_head(fit.head, tmp_path / "heads" / "triage.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    store = LearnStore(tmp_path / "learn.db")
    new_x, new_w = kinds.sample(3, 60)  # pytest failures: a kind the base head never saw
    t0 = time.time() - 3600
    identity = embedding_identity(ENCODER, DEFAULT_WINDOW)
    rows = [{"decision_id": f"d{i:03d}", "task_type": "triage", "ts": t0 + i, "expires": t0 + i + 86400 * 90,
             "label": "test", "source": "frontier", "reason": "hard_stop_novel", "input_sha256": "0" * 64,
             "embedding_identity": identity, "embedding": v, "words": json.dumps({str(k): c for k, c in w.items()})}
            for i, (v, w) in enumerate(zip(new_x, new_w))]
    # One kept before words were stored, with neither words nor text: a words head cannot use it.
    rows.append({**rows[0], "decision_id": "old", "words": None})
    store.write(rows)
    result = run_learn(policy, "triage", store)
    assert result.outcome == "promoted", result.message
    assert result.report["counts"]["no_words"] == 1
    spec = load_policy(policy).tasks["triage"]
    after = load_head(load_policy(policy).resolve_path(spec.head))
    assert after.reads_words and after.examples.lex is not None
    assert int((after.examples.origin == 1).sum()) == 48 and len(after.examples.lex) == len(after.examples)
    probe_x, probe_w = kinds.sample(3, 10)
    assert [after.labels[i] for i in after.probabilities(probe_x, probe_w).argmax(axis=1)] == ["test"] * 10
