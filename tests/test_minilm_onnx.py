"""The int8 ONNX Runtime path of all-MiniLM-L6-v2 against the numpy reference, and its artifact:
a graph built from the pinned weights, cached, and refused or rebuilt when it is not the pinned one.

Tolerances, from measurement: against sentence-transformers' own embeddings the int8 path's lowest
cosine is 0.9925 (the one-token text "ok", where [CLS] and [SEP] are two of three tokens) and the
rest sit above 0.996; against the numpy path on compressed BUMP logs it is 0.9978 at the lowest.
The bars below leave a little room under those and stay far above what a broken graph gives
(below 0.9 for a wrong layer, about 0 for scrambled weights).
"""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from smallfirst.backends.base import BackendError
from smallfirst.backends.embedding import EmbeddingBackend, embed_texts, shared_encoder
from smallfirst.backends.minilm import MINILM_SHA256, MiniLMEncoder, ModelIntegrityError, default_model_dir
from smallfirst.backends.minilm_onnx import GRAPH_SHA256, OnnxMiniLMEncoder, build_graph, graph_path
from smallfirst.logtext import compress_log
from smallfirst.policy import load_policy
from smallfirst.router import LOCAL_INPUT_BUDGET
from smallfirst.heads import load_head

from conftest import SHARED_DATA

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
DEMO_LOGS = Path(__file__).parents[1] / "src" / "smallfirst" / "data" / "demo" / "ci_logs.jsonl"
BUMP = SHARED_DATA / "bump" / "bump_failures.jsonl"
PINNED = GRAPH_SHA256[MINILM_SHA256]


@pytest.fixture(scope="module")
def fast() -> OnnxMiniLMEncoder:
    enc = shared_encoder()
    assert isinstance(enc, OnnxMiniLMEncoder)
    return enc


@pytest.fixture(scope="module")
def reference() -> MiniLMEncoder:
    return MiniLMEncoder()


def _real_logs() -> list[str]:
    """The 21 held-out demo logs and every tenth BUMP log, compressed as the router does."""
    demo = [json.loads(line)["text"] for line in DEMO_LOGS.read_text(encoding="utf-8").splitlines() if line.strip()]
    bump = [json.loads(line)["text"] for line in BUMP.read_text(encoding="utf-8").splitlines()[::10]]
    return [compress_log(t, LOCAL_INPUT_BUDGET).text for t in demo + bump]


@pytest.mark.slow
def test_int8_encoder_stays_close_to_sentence_transformers(fast):
    cases = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
    ours = fast.encode([c["text"] for c in cases])
    ref = np.array([c["embedding"] for c in cases])
    cosines = np.sum(ours * ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosines.min() >= 0.99, dict(zip((c["text"][:30] for c in cases), cosines.round(4)))
    assert np.median(cosines) >= 0.997
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_int8_and_reference_paths_embed_real_logs_alike_and_the_bundled_head_labels_them_alike(fast, reference):
    policy = load_policy(None)
    head = load_head(policy.resolve_path(policy.tasks["classify_issue"].head))
    logs = _real_logs()
    x_fast, _ = embed_texts(fast, logs, head.window)
    x_ref, _ = embed_texts(reference, logs, head.window)
    cosines = np.sum(x_fast * x_ref, axis=1)
    assert cosines.min() >= 0.995, np.sort(cosines)[:5]
    words = head.word_counts(logs)  # the same on both paths: the embedding is what differs
    labels_fast = head.probabilities(x_fast, words).argmax(axis=1)
    labels_ref = head.probabilities(x_ref, words).argmax(axis=1)
    differ = [i for i in range(len(logs)) if labels_fast[i] != labels_ref[i]]
    assert not differ, [(logs[i][-200:], head.labels[labels_fast[i]], head.labels[labels_ref[i]]) for i in differ]


@pytest.mark.slow
def test_a_text_embeds_the_same_alone_or_with_others(fast):
    texts = ["ok", "The build failed because a test asserted 3 == 4 in OrderServiceTest", "x " * 300, ""]
    together = fast.encode(texts)
    alone = np.vstack([fast.encode([t]) for t in texts])
    assert np.array_equal(together, alone)  # one window per run: no batch shares a quantisation scale


def test_the_bundled_model_runs_on_the_int8_path_and_others_on_the_reference(tmp_path):
    enc = shared_encoder()
    assert isinstance(enc, OnnxMiniLMEncoder)
    assert enc.sha256 == PINNED != MINILM_SHA256  # the identity heads and audit records carry
    assert enc.weights_sha256 == MINILM_SHA256
    other = shared_encoder(tmp_path, "ab" * 32)
    assert type(other) is MiniLMEncoder and other.sha256 == "ab" * 32


@pytest.mark.slow
def test_the_graph_build_is_deterministic_and_matches_its_pin():
    import hashlib

    first = build_graph(default_model_dir())
    assert hashlib.sha256(first).hexdigest() == PINNED
    assert build_graph(default_model_dir()) == first


@pytest.mark.slow
def test_a_corrupt_cached_graph_is_rebuilt_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SMALLFIRST_CACHE", str(tmp_path))
    cached = graph_path(PINNED)
    cached.write_bytes(b"not the graph")
    enc = OnnxMiniLMEncoder()
    with caplog.at_level(logging.WARNING, logger="smallfirst.backends.minilm_onnx"):
        vec = enc.encode(["[ERROR] cannot find symbol"])
    assert "rebuilding" in caplog.text and str(cached) in caplog.text
    from smallfirst.backends.minilm import file_sha256

    assert file_sha256(cached) == PINNED
    assert vec.shape == (1, 384)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building-")]  # no temporary left behind


@pytest.mark.slow
def test_a_built_graph_that_differs_from_the_pin_is_refused_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLFIRST_CACHE", str(tmp_path))
    wrong_pin = "0" * 64
    with pytest.raises(ModelIntegrityError) as err:
        OnnxMiniLMEncoder(graph_sha256=wrong_pin).encode(["hello"])
    assert PINNED in str(err.value) and wrong_pin in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_weights_that_differ_from_the_pin_are_refused_before_a_graph_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLFIRST_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copy(default_model_dir() / name, model_dir / name)
    with (model_dir / "model.safetensors").open("r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        OnnxMiniLMEncoder(model_dir).encode(["hello"])
    assert not (tmp_path / "cache").exists()


def test_an_unpinned_model_has_no_int8_path():
    with pytest.raises(BackendError, match="no int8 graph is pinned"):
        OnnxMiniLMEncoder(sha256="cd" * 32)


@pytest.mark.slow
def test_a_head_trained_on_the_reference_path_is_refused_by_the_int8_backend(tmp_path):
    from dataclasses import replace

    from smallfirst.heads import write_head

    bundled = load_policy(None)
    head = load_head(bundled.resolve_path(bundled.tasks["classify_issue"].head))
    # What a head trained on the numpy path records, written whole (a hand edit is refused first).
    write_head(replace(head, embedding_sha256=MINILM_SHA256), tmp_path / "heads" / "classify_issue.json")
    shutil.copy(bundled.source, tmp_path / "policy.yaml")
    policy = load_policy(str(tmp_path / "policy.yaml"))
    backend = EmbeddingBackend(policy.models["local_classifier"], policy)
    with pytest.raises(BackendError, match="retrain the head") as err:
        backend.complete_sync("[ERROR] cannot find symbol", policy.tasks["classify_issue"])
    assert MINILM_SHA256 in str(err.value) and PINNED in str(err.value)


def test_the_policy_sets_the_int8_paths_threads_without_changing_its_identity():
    from smallfirst.policy import parse_policy

    policy = parse_policy("version: 1\nmodels:\n  clf: {provider: embedding, threads: 1}\ntasks:\n  t: {model: clf, labels: [a, b]}\n")
    backend = EmbeddingBackend(policy.models["clf"], policy)
    assert isinstance(backend.encoder, OnnxMiniLMEncoder) and backend.encoder.threads == 1
    assert backend.sha256 == PINNED  # the same graph: heads trained at any thread count apply
