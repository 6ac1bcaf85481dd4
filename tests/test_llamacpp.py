"""The embedded Gemma 3 270M backend, run for real: label scoring, JSON mode, text mode, and the
model file's pin. The model is loaded once for the module; each case is one or a few calls."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from smallfirst.backends.base import BackendError, LocalBackend
from smallfirst.backends.llamacpp import LlamaCppBackend, _bounded_schema, _parse_stream, licence_files
from smallfirst.policy import ModelSpec, TaskSpec

BUNDLED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

COMPILE_ERROR_LOG = """\
[INFO] --- maven-compiler-plugin:3.8.1:compile (default-compile) @ shop-api ---
[INFO] Compiling 42 source files to /build/shop-api/target/classes
[ERROR] COMPILATION ERROR :
[ERROR] /build/shop-api/src/main/java/com/acme/shop/Cart.java:[57,17] cannot find symbol
  symbol:   class PriceCalculator
  location: class com.acme.shop.Cart
[INFO] BUILD FAILURE
"""


def _task(name: str, **fields) -> TaskSpec:
    return TaskSpec(name=name, model="local_default", **fields)


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    # A small max_tokens keeps JSON and text answers short, so the module stays quick.
    b = LlamaCppBackend(ModelSpec(provider="llamacpp", max_tokens=128))
    b.load()
    yield b
    b.close()


def test_backend_implements_the_local_backend_protocol_and_names_its_pinned_file():
    b = LlamaCppBackend(ModelSpec(provider="llamacpp"))
    assert isinstance(b, LocalBackend)
    assert b.name == "gemma-3-270m-q4_k_m"
    assert b.sha256 == BUNDLED_SHA256


def test_licence_files_ship_with_the_bundled_model():
    names = {p.name for p in licence_files()}
    assert names == {"GEMMA_TERMS.html", "NOTICE.md"}
    assert all(p.is_file() for p in licence_files())


@pytest.mark.slow
def test_label_scores_are_a_probability_per_label_and_a_compile_error_is_build(backend):
    spec = _task("classify_failure", description="Classify why a CI build failed, from its log.",
                 labels=["build", "test", "dependency", "access"])
    out = backend.complete_sync(COMPILE_ERROR_LOG, spec)
    assert set(out.scores) == {"build", "test", "dependency", "access"}
    assert math.isclose(sum(out.scores.values()), 1.0, abs_tol=1e-6)
    assert out.label == out.answer == "build"
    assert out.confidence == out.confidence_raw == max(out.scores.values())
    assert out.extra["calibrated"] is False
    assert out.model_sha256 == BUNDLED_SHA256
    assert out.tokens_in > 0


SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "severity": {"enum": ["low", "medium", "high"]},
        "files": {"type": "array", "items": {"type": "string"}},
        "exit_code": {"type": "integer"},
    },
    "required": ["summary", "severity"],
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        COMPILE_ERROR_LOG,
        "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://<registry-host>/left-padd - Not found",
        "The nightly deploy to staging finished at 02:14 without errors; 3 services restarted.",
    ],
    ids=["maven-compile", "npm-404", "no-failure"],
)
def test_json_mode_output_always_parses_and_validates_against_the_schema(backend, text):
    spec = _task("shape_json", description="Turn text into a JSON document that matches a schema.", schema=SCHEMA)
    out = backend.complete_sync(text, spec)
    Draft202012Validator(SCHEMA).validate(json.loads(out.answer))
    assert out.extra["valid_json"] is True
    assert 0.0 < out.confidence <= 1.0
    assert out.tokens_out > 0


@pytest.mark.slow
def test_a_schema_passed_by_the_caller_overrides_the_tasks(backend):
    spec = _task("shape_json", schema=SCHEMA)
    override = {"type": "object", "properties": {"file": {"type": "string"}}, "required": ["file"]}
    out = asyncio.run(backend.complete(COMPILE_ERROR_LOG, spec, schema=override))
    assert set(json.loads(out.answer)) == {"file"}


def test_an_invalid_schema_is_refused_rather_than_ignored(backend):
    spec = _task("shape_json", schema=SCHEMA)
    with pytest.raises(BackendError, match="not a valid JSON Schema"):
        backend.complete_sync("x", spec, schema={"type": "no-such-type"})


@pytest.mark.slow
def test_text_mode_returns_a_non_empty_summary_within_max_output_chars(backend):
    spec = _task("summarize_log", description="Summarise a CI or service log, naming the failure reason.",
                 max_output_chars=80)
    out = backend.complete_sync(COMPILE_ERROR_LOG, spec)
    assert out.answer.strip()
    assert len(out.answer) <= 80
    assert "\n" not in out.answer
    assert 0.0 < out.confidence <= 1.0
    assert out.extra["calibrated"] is False


@pytest.mark.slow
def test_an_input_longer_than_the_context_is_cut_from_the_front_not_refused():
    small = LlamaCppBackend(ModelSpec(provider="llamacpp", n_ctx=512, max_tokens=32))
    noise = "".join(f"[INFO] Downloading artifact {i} of 900 from <registry-host>\n" for i in range(900))
    spec = _task("summarize_log", max_output_chars=120)
    out = small.complete_sync(noise + COMPILE_ERROR_LOG, spec)
    small.close()
    assert out.extra["truncated_input_tokens"] > 0
    assert out.tokens_in <= 512


@pytest.mark.slow
def test_a_timed_out_call_gives_the_model_back(backend):
    spec = _task("summarize_log", max_output_chars=600)

    async def timed_out_then_again() -> str:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(backend.complete(COMPILE_ERROR_LOG * 3, spec), 0.01)
        return (await backend.complete(COMPILE_ERROR_LOG, _task("classify", labels=["build", "test"]))).answer

    assert asyncio.run(timed_out_then_again()) in {"build", "test"}


def test_a_model_file_with_the_wrong_hash_is_refused_naming_file_and_both_hashes(tmp_path: Path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 1024)
    actual = hashlib.sha256(bogus.read_bytes()).hexdigest()
    b = LlamaCppBackend(ModelSpec(provider="llamacpp", path=str(bogus), sha256=BUNDLED_SHA256))
    with pytest.raises(BackendError) as err:
        b.load()
    assert str(bogus) in str(err.value)
    assert BUNDLED_SHA256 in str(err.value) and actual in str(err.value)
    assert b.model_path is None  # refused before llama.cpp saw the file


def test_a_model_path_that_does_not_exist_says_so(tmp_path: Path):
    missing = tmp_path / "nowhere" / "model.gguf"
    b = LlamaCppBackend(ModelSpec(provider="llamacpp", path=str(missing)))
    with pytest.raises(BackendError, match="does not exist") as err:
        b.complete_sync("x", _task("summarize_log"))
    assert str(missing) in str(err.value)


def test_an_error_from_llama_cpp_becomes_a_backend_error_with_its_message():
    chunk = {"error": {"code": 400, "message": "failed to parse grammar", "type": "invalid_request_error"}}
    with pytest.raises(BackendError, match="failed to parse grammar"):
        _parse_stream([chunk])


def test_the_grammar_schema_is_bounded_but_never_looser_than_the_callers():
    schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "allOf": [{"properties": {"extra": {"type": "string"}}}],
    }
    bounded = _bounded_schema(schema, max_tokens=128)
    props = bounded["properties"]
    assert 8 <= props["summary"]["maxLength"] <= 256
    assert "maxLength" not in props["kind"]  # an enum is already bounded
    assert props["tags"]["maxItems"] > 0 and props["tags"]["items"]["maxLength"] > 0
    # Objects combined with allOf stay open: closing them could reject what a branch allows.
    assert "additionalProperties" not in bounded
    assert "additionalProperties" not in bounded["allOf"][0]
    plain = _bounded_schema({"type": "object", "properties": {"a": {"type": "string"}}}, max_tokens=128)
    assert plain["additionalProperties"] is False
    assert schema["properties"]["summary"] == {"type": "string"}  # the caller's schema is untouched
