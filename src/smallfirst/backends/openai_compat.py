"""Any /v1/chat/completions server: Ollama, llama.cpp server, vLLM, LM Studio, OpenAI.

As the frontier model it answers chats. As a local model it answers tasks, and its confidence
comes only from the token log-probabilities the server returns: the probability mass the first
answer token puts on each label, or the geometric-mean token probability of a generated text.
A server that returns no log-probabilities yields confidence None, which the gate never trusts;
a confidence the model writes in its answer is never read.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Sequence
from urllib.parse import urlsplit

from smallfirst.backends import http
from smallfirst.backends.base import BackendError
from smallfirst.tasks import FrontierAnswer, LocalOutput

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, TaskSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A label is a word or two; a few tokens more leave room for a stray quote or newline.
CLASSIFY_MAX_TOKENS = 16
TOP_LOGPROBS = 10


# ---------------------------------------------------------------- prompts (shared with anthropic.py)


def task_prompt(spec: "TaskSpec") -> str:
    """The system prompt that turns a task spec into instructions for a chat model."""
    parts = [p for p in (spec.instructions, spec.description) if p]
    if spec.kind == "classify":
        listed = "\n".join(
            f"- {lbl}: {spec.label_descriptions[lbl]}" if lbl in spec.label_descriptions else f"- {lbl}"
            for lbl in spec.labels
        )
        parts.append(
            f"Classify the input into exactly one of these labels:\n{listed}\n"
            "Answer with the label only, exactly as written above, and nothing else."
        )
    elif spec.kind == "json":
        parts.append(
            "Answer with one JSON document and nothing else, matching this JSON Schema:\n"
            + json.dumps(spec.schema, separators=(",", ":"))
        )
    return "\n\n".join(parts) or "Answer the request."


_LABEL_NOISE = " \t\r\n\"'`*.:,;!()[]{}"


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label a model wrote, tolerating case, quotes, markdown and a trailing full stop."""
    norm = answer.strip(_LABEL_NOISE).lower()
    by_lower = {lbl.lower(): lbl for lbl in labels}
    if norm in by_lower:
        return by_lower[norm]
    # "build - the compiler failed": the longest label the answer starts with, as a whole word.
    for low in sorted(by_lower, key=len, reverse=True):
        if norm.startswith(low) and not norm[len(low) : len(low) + 1].isalnum():
            return by_lower[low]
    return None


# ---------------------------------------------------------------- confidence from log-probabilities


def label_probabilities(
    position: Mapping[str, Any], labels: Sequence[str], answered: str | None
) -> tuple[dict[str, float], float]:
    """Label probabilities from one answer position's top_logprobs.

    Each candidate token's probability goes to the labels it begins (" Build" begins "build"); a
    token that begins several labels is split evenly, except the token actually generated, whose
    mass goes to the label the full answer turned out to be. Returns the probabilities
    renormalised over labels, and the total mass that fell on any label (the rest went to tokens
    that start no label, which is doubt the confidence must show).
    """
    mass = dict.fromkeys(labels, 0.0)
    lowered = [(lbl, lbl.lower()) for lbl in labels]
    seen: set[str] = set()
    for cand in position.get("top_logprobs") or ():
        token, logprob = cand.get("token"), cand.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)) or token in seen:
            continue
        seen.add(token)
        p = math.exp(logprob)
        if token == position.get("token") and answered is not None:
            mass[answered] += p
            continue
        stem = token.strip(_LABEL_NOISE).lower()
        if not stem:
            continue
        hits = [lbl for lbl, low in lowered if low.startswith(stem)]
        for lbl in hits:
            mass[lbl] += p / len(hits)
    on_labels = sum(mass.values())
    if on_labels <= 0.0:
        return {lbl: 0.0 for lbl in labels}, 0.0
    return {lbl: m / on_labels for lbl, m in mass.items()}, min(1.0, on_labels)


def first_word_position(content: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first generated token with a letter or digit in it: a leading quote, newline or `**`
    says nothing about which label comes next."""
    for pos in content:
        token = pos.get("token")
        if isinstance(token, str) and any(ch.isalnum() for ch in token):
            return pos
    return None


def geometric_mean_probability(content: Sequence[Mapping[str, Any]]) -> float | None:
    logprobs = [pos["logprob"] for pos in content if isinstance(pos.get("logprob"), (int, float))]
    if not logprobs:
        return None
    return math.exp(sum(logprobs) / len(logprobs))


def strict_schema_ok(schema: Any) -> bool:
    """Whether OpenAI's strict structured outputs accept this schema: every object lists all its
    properties as required and forbids others. Strict mode rejects any other schema with a 400,
    so such schemas are sent non-strict (still a strong hint; the gate validates either way)."""
    if isinstance(schema, list):
        return all(strict_schema_ok(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or ()) != set(props):
            return False
    return all(strict_schema_ok(v) for v in schema.values() if isinstance(v, (dict, list)))


# ---------------------------------------------------------------- the backend


class OpenAICompatBackend:
    """Chat and task answers from an OpenAI-compatible server at `spec.base_url`."""

    def __init__(self, spec: "ModelSpec", *, backoff_s: float = http.DEFAULT_BACKOFF_S):
        self.spec = spec
        self.name: str = spec.name or spec.display_name
        self.sha256: str | None = None
        base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = base + "/chat/completions"
        self.backoff_s = backoff_s
        # OpenAI's own API has deprecated max_tokens (newer models reject it); the local servers
        # this mostly talks to know only max_tokens.
        self._max_tokens_key = "max_completion_tokens" if urlsplit(base).hostname == "api.openai.com" else "max_tokens"

    @property
    def configured(self) -> bool:
        return True  # a URL is enough: local servers need no key

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.spec.api_key_env) if self.spec.api_key_env else None
        return {"authorization": f"Bearer {key}"} if key else {}

    def _chat_body(self, messages: Sequence[Mapping[str, str]], system: str | None, max_tokens: int) -> dict[str, Any]:
        msgs = [{"role": "system", "content": system}, *messages] if system else list(messages)
        return {"model": self.name, "messages": msgs, self._max_tokens_key: max_tokens}

    async def _post(self, body: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        return await http.post_json(
            self.url,
            body,
            self._headers(),
            timeout_s=timeout_s or self.spec.timeout_s,
            retries=self.spec.retries,
            backoff_s=self.backoff_s,
        )

    def _choice(self, resp: Mapping[str, Any]) -> Mapping[str, Any]:
        choices = resp.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BackendError(f"{http.server_label(self.url)}: response has no choices")
        return choices[0]

    async def chat(
        self, messages: list[dict[str, str]], *, system: str | None = None, max_tokens: int = 1024
    ) -> FrontierAnswer:
        t0 = time.perf_counter()
        resp = await self._post(self._chat_body(messages, system, max_tokens))
        text = (self._choice(resp).get("message") or {}).get("content") or ""
        usage = resp.get("usage") or {}
        return FrontierAnswer(
            text=text,
            model=self.name,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_ms=(time.perf_counter() - t0) * 1000,
            response_id=resp["id"] if isinstance(resp.get("id"), str) else None,
        )

    async def stream_chat(
        self, messages: list[dict[str, str]], *, system: str | None = None, max_tokens: int = 1024
    ) -> AsyncIterator[str]:
        """The answer's text as it is generated (SSE `data:` chunks until `[DONE]`)."""
        body = {**self._chat_body(messages, system, max_tokens), "stream": True}
        events = http.post_sse(
            self.url,
            body,
            self._headers(),
            timeout_s=self.spec.timeout_s,
            retries=self.spec.retries,
            backoff_s=self.backoff_s,
        )
        # Closing the inner stream at once releases the connection when the answer ends early.
        async with aclosing(events):
            async for ev in events:
                if ev.data.strip() == "[DONE]":
                    return
                try:
                    chunk = json.loads(ev.data)
                except ValueError:
                    raise BackendError(
                        f"{http.server_label(self.url)}: stream chunk is not JSON: {ev.data[:80]}"
                    ) from None
                if isinstance(chunk.get("error"), dict):
                    detail, etype = http.error_detail(ev.data.encode())
                    raise http.HTTPBackendError(
                        http.server_label(self.url),
                        "error event after the answer began: " + detail,
                        status=200,
                        attempts=1,
                        error_type=etype,
                    )
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta

    async def complete(self, text: str, spec: "TaskSpec") -> LocalOutput:
        kind = spec.kind
        body: dict[str, Any] = {
            **self._chat_body([{"role": "user", "content": text}], task_prompt(spec), self.spec.max_tokens),
            "temperature": 0,
            "logprobs": True,
        }
        if kind == "classify":
            body[self._max_tokens_key] = CLASSIFY_MAX_TOKENS
            body["top_logprobs"] = TOP_LOGPROBS
        elif kind == "json":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": re.sub(r"[^A-Za-z0-9_-]", "_", spec.name)[:64] or "answer",
                    "schema": spec.schema,
                    "strict": strict_schema_ok(spec.schema),
                },
            }
        resp = await self._post(body, spec.timeout_s)
        choice = self._choice(resp)
        answer = ((choice.get("message") or {}).get("content") or "").strip()
        content = (choice.get("logprobs") or {}).get("content") or None
        usage = resp.get("usage") or {}
        common: dict[str, Any] = {
            "model": self.name,
            "tokens_in": int(usage.get("prompt_tokens") or 0),
            "tokens_out": int(usage.get("completion_tokens") or 0),
            "extra": {
                "finish_reason": choice.get("finish_reason"),
                "truncated": choice.get("finish_reason") == "length",
            },
        }
        if kind != "classify":
            confidence = geometric_mean_probability(content) if content else None
            return LocalOutput(answer=answer, confidence=confidence, confidence_raw=confidence, **common)

        written = parse_label(answer, spec.labels)
        if not content:
            # No log-probabilities: the label stands, but nothing says how sure the model was.
            return LocalOutput(answer=written or answer, label=written, **common)
        position = first_word_position(content)
        scores, on_labels = label_probabilities(position or {}, spec.labels, written)
        top = max(scores, key=scores.__getitem__)
        # The top label's share of ALL the position's mass, not of the label mass only:
        # probability spent on tokens that start no label is doubt.
        confidence = scores[top] * on_labels
        label = top if on_labels > 0 else written
        return LocalOutput(
            answer=label or answer,
            label=label,
            scores=scores,
            confidence=confidence,
            confidence_raw=confidence,
            **common,
        )

    async def aclose(self) -> None:
        await http.aclose()
