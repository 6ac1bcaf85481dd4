"""Anthropic Messages API (POST /v1/messages), the default frontier model.

It can also stand in as a task's model, but this API returns no token probabilities, so every
local answer it gives has confidence None: the gate accepts it only where no confidence is
required (it never reads a confidence the model wrote).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Sequence

from smallfirst.backends import http
from smallfirst.backends.base import BackendError
from smallfirst.backends.openai_compat import CLASSIFY_MAX_TOKENS, parse_label, task_prompt
from smallfirst.tasks import FrontierAnswer, LocalOutput

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, TaskSpec

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_API_KEY_ENV = "ANTHROPIC_API_KEY"


class AnthropicBackend:
    def __init__(self, spec: "ModelSpec", *, backoff_s: float = http.DEFAULT_BACKOFF_S):
        self.spec = spec
        self.name: str = spec.name or spec.display_name
        self.sha256: str | None = None
        self.api_key_env = spec.api_key_env or DEFAULT_API_KEY_ENV
        base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        # The SDKs take the base without /v1; accept it with /v1 too rather than post to /v1/v1.
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self.backoff_s = backoff_s

    @property
    def configured(self) -> bool:
        """False without an API key: the router then escalates with "no frontier configured"
        instead of sending a request that can only fail."""
        return bool(os.environ.get(self.api_key_env))

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BackendError(
                f"{http.server_label(self.url)}: no API key (environment variable {self.api_key_env} is unset)"
            )
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}

    def _body(self, messages: Sequence[Mapping[str, str]], system: str | None, max_tokens: int) -> dict[str, Any]:
        # The Messages API takes the system prompt as a top-level field and rejects a "system"
        # role in the list; callers that speak OpenAI's format put it there, so move it.
        systems = [system] if system else []
        turns = []
        for m in messages:
            if m.get("role") == "system":
                systems.append(m.get("content") or "")
            else:
                turns.append({"role": m["role"], "content": m["content"]})
        body: dict[str, Any] = {"model": self.name, "max_tokens": max_tokens, "messages": turns}
        if systems:
            body["system"] = "\n\n".join(systems)
        return body

    async def _post(self, body: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        return await http.post_json(
            self.url,
            body,
            self._headers(),
            timeout_s=timeout_s or self.spec.timeout_s,
            retries=self.spec.retries,
            backoff_s=self.backoff_s,
        )

    async def chat(
        self, messages: list[dict[str, str]], *, system: str | None = None, max_tokens: int = 1024
    ) -> FrontierAnswer:
        t0 = time.perf_counter()
        resp = await self._post(self._body(messages, system, max_tokens))
        usage = resp.get("usage") or {}
        return FrontierAnswer(
            text=_text_of(resp),
            model=self.name,
            tokens_in=int(usage.get("input_tokens") or 0),
            tokens_out=int(usage.get("output_tokens") or 0),
            latency_ms=(time.perf_counter() - t0) * 1000,
            response_id=resp["id"] if isinstance(resp.get("id"), str) else None,
        )

    async def stream_chat(
        self, messages: list[dict[str, str]], *, system: str | None = None, max_tokens: int = 1024
    ) -> AsyncIterator[str]:
        """The answer's text as it is generated, from the text_delta events of the stream."""
        body = {**self._body(messages, system, max_tokens), "stream": True}
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
                try:
                    data = json.loads(ev.data)
                except ValueError:
                    raise BackendError(
                        f"{http.server_label(self.url)}: stream event is not JSON: {ev.data[:80]}"
                    ) from None
                kind = data.get("type", ev.event)
                if kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield delta["text"]
                elif kind == "message_stop":
                    return
                elif kind == "error":
                    # An error after the 200 (e.g. overloaded mid-answer) arrives as an event.
                    detail, etype = http.error_detail(ev.data.encode())
                    raise http.HTTPBackendError(
                        http.server_label(self.url),
                        "error event after the answer began: " + detail,
                        status=200,
                        attempts=1,
                        error_type=etype,
                    )
                # message_start, content_block_start/stop, message_delta, ping: nothing to pass on.

    async def complete(self, text: str, spec: "TaskSpec") -> LocalOutput:
        max_tokens = CLASSIFY_MAX_TOKENS if spec.kind == "classify" else self.spec.max_tokens
        body = {**self._body([{"role": "user", "content": text}], task_prompt(spec), max_tokens), "temperature": 0}
        resp = await self._post(body, spec.timeout_s)
        answer = _text_of(resp).strip()
        usage = resp.get("usage") or {}
        label = parse_label(answer, spec.labels) if spec.kind == "classify" else None
        return LocalOutput(
            answer=label or answer,
            model=self.name,
            label=label,
            tokens_in=int(usage.get("input_tokens") or 0),
            tokens_out=int(usage.get("output_tokens") or 0),
            extra={"finish_reason": resp.get("stop_reason"), "truncated": resp.get("stop_reason") == "max_tokens"},
        )

    async def aclose(self) -> None:
        await http.aclose()


def _text_of(resp: Mapping[str, Any]) -> str:
    blocks = resp.get("content")
    if not isinstance(blocks, list):
        raise BackendError("Anthropic response has no content blocks")
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
