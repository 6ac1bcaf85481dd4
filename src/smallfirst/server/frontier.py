"""One request's exchange with the frontier model: what it is sent, and how its answer reaches
the caller.

The frontier receives the agent's own request when no local model had a say (kill switch, rollout
group, unknown task, a task or tool use the policy sends to the frontier) and in shadow mode,
where the caller must see what it would see without smallfirst. When a local path was tried and
left (a hard stop, a gate check, a local failure), it receives the router's escalation packet:
short, masked, and saying why.

A frontier that speaks the caller's format gets the request and gives its answer unchanged (the
`model` field names the model that answered, as it should); across formats both are translated.
A streamed answer passes through event by event: each upstream event becomes the caller's SSE
bytes in `pending`, and its text is handed to the router, which records the decision when the
stream ends.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import aclosing
from types import ModuleType
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

from smallfirst.backends import http
from smallfirst.backends.base import BackendError
from smallfirst.policy import ModelSpec
from smallfirst.reasons import FallbackReason
from smallfirst.router import Escalation, FrontierStream
from smallfirst.server import anthropic_wire, openai_wire
from smallfirst.server.wire import Answer, ChatRequest, TextDelta, WireError, sse
from smallfirst.tasks import FrontierAnswer

WIRES: dict[str, ModuleType] = {"openai": openai_wire, "anthropic": anthropic_wire}
# Reasons decided before any local model looked at the input: the frontier does the agent's step
# exactly as the agent asked for it.
ORIGINAL_REQUEST_REASONS = frozenset(
    {FallbackReason.MANUAL_OVERRIDE, FallbackReason.UNKNOWN_TASK, FallbackReason.POLICY_REQUIRES_FRONTIER}
)
# Upstream statuses that mean the caller's request itself was refused; passed on as they are.
CALLER_STATUSES = frozenset({400, 413, 422})


class CallerError(BackendError):
    """The caller's request cannot go upstream as it is: it does not translate to the frontier's
    format, or the frontier refused it as invalid; or this service failed (500). Answered with
    `status`, not 502."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Exchange:
    """Pass `exchange.call` to Router.aroute(frontier_call=...); read the outcome afterwards."""

    def __init__(self, req: ChatRequest, *, shadow: bool, msg_id: str):
        self.req = req
        self.caller_wire = WIRES[req.protocol]
        self.shadow = shadow
        self.msg_id = msg_id
        self.answer: Answer | None = None  # a whole answer, in neutral form
        self.raw_body: bytes | None = None  # the upstream answer's bytes, when formats match
        self.pending: list[bytes] = []  # the caller's SSE bytes not yet written
        self.failure: BackendError | None = None
        self.sent_original = False
        self.stream: FrontierStream | None = None

    def failure_status(self) -> int:
        if isinstance(self.failure, CallerError):
            return self.failure.status
        status = getattr(self.failure, "status", None)
        if self.sent_original and status in CALLER_STATUSES:
            return int(status)
        return 502

    async def call(self, esc: Escalation, backend: Any, spec: ModelSpec, stream: bool) -> FrontierAnswer | FrontierStream:
        try:
            return await self._call(esc, backend, spec, stream)
        except BackendError as exc:
            self.failure = exc
            raise
        except WireError as exc:
            self.failure = CallerError(str(exc))
            raise self.failure from None
        except Exception as exc:
            # A bug here must still leave its audit record: the router records a BackendError.
            self.failure = CallerError(f"internal error in smallfirst: {type(exc).__name__}: {exc}", 500)
            raise self.failure from exc

    async def _call(self, esc: Escalation, backend: Any, spec: ModelSpec, stream: bool) -> FrontierAnswer | FrontierStream:
        protocol = "anthropic" if spec.provider == "anthropic" else "openai"
        up = WIRES[protocol]
        url: str = backend.url
        model = spec.name or spec.display_name
        max_tokens = self.req.max_tokens or spec.max_tokens
        self.sent_original = self.shadow or self.req.has_tools or esc.reason in ORIGINAL_REQUEST_REASONS
        if protocol == "openai":
            # OpenAI's own API rejects max_tokens for newer models; other servers know only it.
            key = "max_completion_tokens" if _is_openai(url) else "max_tokens"
            kw: dict[str, Any] = {"max_tokens": max_tokens, "max_tokens_key": key, "stream": stream}
        else:
            kw = {"max_tokens": max_tokens, "stream": stream}
        if self.sent_original:
            try:
                body = up.request_body(self.req, model, **kw)
            except (AttributeError, TypeError, KeyError, ValueError) as exc:
                if isinstance(exc, WireError):
                    raise
                # Nested parts this service does not validate (content blocks, tool calls) that
                # do not have the shape their format gives them.
                raise WireError(f"a part of the request is not in the {self.req.protocol} format: "
                                f"{type(exc).__name__}: {exc}") from None
        else:
            system, messages = esc.packet.messages()
            body = up.packet_body(system, messages, model, **kw)
        headers = _auth_headers(spec, protocol, url)
        if self.sent_original and protocol == self.req.protocol:
            headers.update(self.req.headers)
        same_format = protocol == self.req.protocol
        common = {"timeout_s": spec.timeout_s, "retries": spec.retries, "backoff_s": getattr(backend, "backoff_s", http.DEFAULT_BACKOFF_S)}
        if not stream:
            t = time.perf_counter()
            data, raw = await http.post_json_raw(url, body, headers, **common)
            self.answer = up.read_answer(data, model)
            self.raw_body = raw if same_format else None
            return FrontierAnswer(self.answer.text, self.answer.model, self.answer.tokens_in, self.answer.tokens_out,
                                  (time.perf_counter() - t) * 1000, self.answer.response_id)
        events = http.post_sse(url, body, headers, **common)
        # The relay fills in the token counts as usage events arrive; the router reads them from
        # this object when the stream ends.
        self.stream = FrontierStream(self._relay(events, up.StreamDecoder(http.server_label(url)), same_format), model)
        return self.stream

    async def _relay(self, events: AsyncIterator[http.SSEEvent], decoder: Any, same_format: bool) -> AsyncIterator[str]:
        fs = self.stream
        assert fs is not None  # set before the router starts reading
        encoder = None if same_format else self.caller_wire.StreamEncoder(self.msg_id, fs.model, **self._encoder_kw())
        started = False
        try:
            async with aclosing(events):
                async for ev in events:
                    if encoder is not None and not started:
                        self.pending.append(encoder.start())
                    started = True
                    deltas = decoder.feed(ev)
                    fs.tokens_in, fs.tokens_out = decoder.tokens_in, decoder.tokens_out
                    fs.response_id = decoder.response_id
                    if encoder is not None:
                        self.pending.append(b"".join(encoder.feed(d) for d in deltas))
                    elif not (decoder.usage_only and not self.req.include_usage):
                        # A usage chunk the caller did not ask for is dropped: clients that read
                        # chunk.choices[0] would trip over its empty choices.
                        self.pending.append(sse(ev.data, None if ev.event == "message" else ev.event))
                    yield "".join(d.text for d in deltas if isinstance(d, TextDelta))
                    if decoder.done:
                        return
            # The upstream ended without its final event: close the caller's stream properly.
            deltas = decoder.end()
            if encoder is not None:
                if not started:
                    self.pending.append(encoder.start())
                self.pending.append(b"".join(encoder.feed(d) for d in deltas))
            elif self.req.protocol == "openai":
                self.pending.append(b"data: [DONE]\n\n")
            else:
                self.pending.append(sse('{"type": "message_stop"}', "message_stop"))
        except BackendError as exc:
            self.failure = exc
            raise

    def _encoder_kw(self) -> dict[str, Any]:
        return {"include_usage": self.req.include_usage} if self.req.protocol == "openai" else {}

    def error_event(self, message: str) -> bytes:
        """The caller's error event for a stream that failed after its 200."""
        encoder = self.caller_wire.StreamEncoder(self.msg_id, "", **self._encoder_kw())
        return encoder.error(message)


@functools.lru_cache(maxsize=64)
def _is_openai(url: str) -> bool:
    return urlsplit(url).hostname == "api.openai.com"


def _auth_headers(spec: ModelSpec, protocol: str, url: str) -> dict[str, str]:
    if protocol == "anthropic":
        env = spec.api_key_env or "ANTHROPIC_API_KEY"
        key = os.environ.get(env)
        if not key:
            raise BackendError(f"{http.server_label(url)}: no API key (environment variable {env} is unset)")
        return {"x-api-key": key, "anthropic-version": anthropic_wire.ANTHROPIC_VERSION}
    key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    return {"authorization": f"Bearer {key}"} if key else {}
