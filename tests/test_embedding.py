import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from smallfirst.backends.base import LocalBackend
from smallfirst.backends.embedding import EmbeddingBackend, embed_texts, shared_encoder
from smallfirst.backends.minilm import MINILM_SHA256, MiniLMEncoder, ModelIntegrityError, default_model_dir, file_sha256
from smallfirst.heads import MAX_SEQ_TOKENS, Window
from smallfirst.policy import parse_policy

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"

ZERO_SHOT_POLICY = """
version: 1
models:
  clf: {provider: embedding}
tasks:
  triage:
    model: clf
    labels: [build, test, access]
    label_descriptions:
      build: compilation failed, compiler error, cannot find symbol, syntax error
      test: unit tests failed, assertion failed, expected value but was another
      access: unauthorized, forbidden, 401 or 403, missing token or credentials, permission denied
"""


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()  # the numpy reference path; the int8 one has tests/test_minilm_onnx.py


@pytest.mark.slow
def test_numpy_encoder_matches_sentence_transformers(encoder):
    cases = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
    ours = encoder.encode([c["text"] for c in cases])
    for case, vec in zip(cases, ours):
        ref = np.asarray(case["embedding"])
        cosine = float(vec @ ref / np.linalg.norm(ref))
        assert cosine >= 0.99999, (case["text"][:60], cosine)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_padding_in_a_batch_does_not_change_an_embedding(encoder):
    texts = ["ok", "The build failed because a test asserted 3 == 4 in OrderServiceTest", "x " * 300]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_windows_cut_long_text_into_model_sized_pieces():
    ids = list(range(1000))
    body = MAX_SEQ_TOKENS - 2
    assert Window("first").cut(ids) == [ids[:body]]
    assert Window("last").cut(ids) == [ids[-body:]]  # a full window, not the 238-token remainder
    mean = Window("mean", max_windows=3).cut(ids)
    assert [len(w) for w in mean] == [body, body, 1000 - 3 * body]  # the last three: logs end in the failure
    assert Window("mean").cut([]) == [[]]
    for window in (Window("mean", 4), Window("last"), Window("first")):
        assert Window.from_dict(window.to_dict()) == window


@pytest.mark.slow
def test_a_long_text_read_through_windows_stays_a_unit_vector(encoder):
    text = "[ERROR] cannot find symbol\n" * 200
    vec, tokens = embed_texts(encoder, [text, "short"], Window("mean", 4))
    assert vec.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    assert 3 * MAX_SEQ_TOKENS < tokens[0] <= 4 * MAX_SEQ_TOKENS  # four windows read, no more
    assert tokens[1] == 3  # [CLS] short [SEP]


@pytest.mark.slow
def test_zero_shot_picks_the_obvious_label():
    policy = parse_policy(ZERO_SHOT_POLICY)
    backend = EmbeddingBackend(policy.models["clf"], policy)
    task = policy.tasks["triage"]
    cases = {
        "error: cannot find symbol, compilation failed with 3 compiler errors": "build",
        "AssertionError: expected 3 but was 4; 2 unit tests failed": "test",
        "HTTP 403 Forbidden: missing token, permission denied": "access",
    }
    for text, label in cases.items():
        out = backend.complete_sync(text, task)
        assert out.label == label == out.answer, (text, out.scores)
        assert set(out.scores) == set(task.labels)
        assert sum(out.scores.values()) == pytest.approx(1.0)
        assert out.confidence == out.confidence_raw == out.scores[label]
        assert out.extra["calibrated"] is False
        assert out.model_sha256 == backend.encoder.sha256 == shared_encoder().sha256
        assert out.tokens_in > 0


@pytest.mark.slow
def test_embedding_backend_answers_through_the_async_protocol():
    policy = parse_policy(ZERO_SHOT_POLICY)
    backend = EmbeddingBackend(policy.models["clf"], policy)
    assert isinstance(backend, LocalBackend)
    assert backend.name == "all-MiniLM-L6-v2"
    out = asyncio.run(backend.complete("403 Forbidden: unauthorized", policy.tasks["triage"]))
    assert out.label == "access"


def _copy_model(tmp_path: Path) -> Path:
    src = default_model_dir()
    dst = tmp_path / "model"
    dst.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copy(src / name, dst / name)
    return dst


def test_model_file_that_differs_from_the_pin_is_refused(tmp_path):
    model_dir = _copy_model(tmp_path)
    with (model_dir / "model.safetensors").open("r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError) as err:
        MiniLMEncoder(model_dir).encode(["hello"])
    message = str(err.value)
    assert str(model_dir / "model.safetensors") in message
    assert MINILM_SHA256 in message
    assert file_sha256(model_dir / "model.safetensors") in message


def test_a_model_file_changed_in_place_is_hashed_again(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"first")
    first = file_sha256(path)
    path.write_bytes(b"second, longer")
    assert file_sha256(path) != first


@pytest.mark.slow
def test_concurrent_calls_share_one_encoder_and_agree_with_sequential_ones():
    policy = parse_policy(ZERO_SHOT_POLICY)
    backend = EmbeddingBackend(policy.models["clf"], policy)
    other = EmbeddingBackend(policy.models["clf"], policy)
    assert other.encoder is backend.encoder
    task = policy.tasks["triage"]
    texts = ["cannot find symbol", "expected 3 but was 4", "403 Forbidden", "permission denied"] * 2

    async def together():
        return await asyncio.gather(*(backend.complete(t, task) for t in texts))

    concurrent = asyncio.run(together())
    for text, out in zip(texts, concurrent):
        alone = backend.complete_sync(text, task)
        assert out.label == alone.label
        assert out.confidence == pytest.approx(alone.confidence, abs=1e-6)


def test_the_last_window_of_a_long_text_is_read_from_its_tail_exactly_as_from_the_whole():
    from conftest import SHARED_DATA
    from smallfirst.backends.embedding import _last_ids

    enc = MiniLMEncoder()
    rows = (SHARED_DATA / "bump" / "bump_failures.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(r)["text"] for r in rows[::5]]
    texts += ["word " * 3000, "x" * 5000 + " tail", "é" * 4000, "short text", "a/b/c " * 900 + "\n" * 50]
    window = Window("last")
    whole = [window.cut(ids) for ids in enc.token_ids_batch(texts)]
    assert [window.cut(ids) for ids in _last_ids(enc, texts)] == whole
