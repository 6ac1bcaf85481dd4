"""Local servers that speak the paid APIs' real wire protocols, for tests.

A paid frontier API cannot run here, so it is faked at the wire: a real aiohttp server on
127.0.0.1 (ephemeral port) answering with the exact response, streaming and error shapes of the
real API. Clients under test talk HTTP to it unchanged.

    async with FakeOpenAI() as srv:             # on the running loop
        srv.enqueue(Fault.http(500), Reply("hello"))
        ... OpenAICompatBackend(ModelSpec(..., base_url=srv.base_url)) ...
        srv.requests[-1].headers["authorization"]

    with FakeAnthropic.start_in_thread(api_key="k") as srv:   # from sync code, own thread+loop
        ...

Each request takes the next scripted item from the queue (`enqueue`: a Reply, a plain string,
or a Fault); when the queue is empty the `reply` function answers (default: an echo of the last
user message). Every request is recorded in `requests`, faults included.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Mapping, Sequence, Union

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    `top_logprobs` gives, per generated token position, the candidate tokens and their
    log-probabilities (the generated token is added at `token_logprob` if missing). `tokens`
    fixes how the text splits into tokens (default: words with their leading whitespace).
    `logprobs=False` plays a server without log-probability support: it answers `null` even when
    asked. `finish_reason` overrides the natural one (stop/end_turn, or length/max_tokens).
    """

    text: str = "ok"
    tokens: Sequence[str] | None = None
    top_logprobs: Sequence[Mapping[str, float]] = ()
    token_logprob: float = -0.01
    logprobs: bool = True
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    delay_s: float = 0.0

    def token_list(self) -> list[str]:
        return list(self.tokens) if self.tokens is not None else split_tokens(self.text)


@dataclass(frozen=True)
class Fault:
    """One scripted failure: an HTTP error with the protocol's real error body, a slow answer,
    a dropped connection, or (for streaming requests) an error event after part of the answer."""

    kind: Literal["http", "slow", "drop", "stream_error"]
    status: int = 500
    message: str | None = None
    error_type: str | None = None
    retry_after: str | None = None
    delay_s: float = 0.0

    @classmethod
    def http(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        retry_after: float | str | None = None,
    ) -> "Fault":
        return cls("http", status, message, error_type, None if retry_after is None else str(retry_after))

    @classmethod
    def slow(cls, seconds: float) -> "Fault":
        """Answer normally, but only after `seconds` (a client with a shorter timeout gives up)."""
        return cls("slow", 200, delay_s=seconds)

    @classmethod
    def drop(cls) -> "Fault":
        """Close the connection without sending a response."""
        return cls("drop")

    @classmethod
    def stream_error(cls, status: int = 529, message: str | None = None, *, error_type: str | None = None) -> "Fault":
        """For stream requests: 200, a few text deltas, then the protocol's error event."""
        return cls("stream_error", status, message, error_type)


Item = Union[Reply, Fault, str]
ReplyFn = Callable[[dict[str, Any]], Union[Item, Awaitable[Item]]]


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # keys lowercased
    json: Any  # None when the body was not JSON
    body: bytes = field(repr=False, default=b"")


_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Stand-in tokenizer: each word with its leading whitespace, like BPE vocabularies do."""
    return _TOKEN_RE.findall(text)


def count_tokens(value: Any) -> int:
    """Rough token count of message content: strings, content-block lists, nested dicts."""
    if isinstance(value, str):
        return len(split_tokens(value))
    if isinstance(value, list):
        return sum(count_tokens(v) for v in value)
    if isinstance(value, dict):
        return sum(count_tokens(v) for k, v in value.items() if k in ("content", "text"))
    return 0


def text_of(content: Any) -> str:
    """Text of one message's content: a string, or content blocks of type text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def echo_reply(body: dict[str, Any]) -> Reply:
    """Default answer: deterministic, and shows which message the server saw."""
    users = [m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    last = text_of(users[-1].get("content")) if users else ""
    return Reply(f"echo: {last[:200]}")


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """The text up to the earliest stop sequence, and which one matched."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text[: best[0]], best[1]) if best else (text, None)


class FakeServer:
    """Shared machinery; subclasses add the routes and the protocol's shapes."""

    def __init__(
        self, *, reply: ReplyFn | None = None, api_key: str | None = None, models: Sequence[str] | None = None
    ):
        self.reply_fn: ReplyFn = reply or echo_reply
        self.api_key = api_key  # None: accept any credentials (or none), like a local server
        self.models = set(models) if models is not None else None  # None: every model exists
        self.queue: collections.deque[Item] = collections.deque()
        self.requests: list[ReceivedRequest] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ scripting

    def enqueue(self, *items: Item) -> None:
        self.queue.extend(items)

    def fail(self, n: int, status: int = 500, *, retry_after: float | str | None = None) -> None:
        """The next `n` requests fail with `status` and the protocol's error body."""
        self.enqueue(*[Fault.http(status, retry_after=retry_after) for _ in range(n)])

    @property
    def base_url(self) -> str:
        """What a client is configured with; subclasses say whether it includes /v1."""
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------ lifecycle on the running loop

    async def start(self) -> "FakeServer":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        # handler_cancellation: a client that times out and disconnects cancels a slow handler,
        # so stopping the server never waits for it.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ lifecycle in a thread (sync tests)

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> Any:
        """Start on a private event loop in a daemon thread; `stop()` (or `with`) ends it."""
        srv = cls(**kwargs)
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()
            loop.close()

        srv._loop = loop
        srv._thread = threading.Thread(target=run, name=f"{cls.__name__}-server", daemon=True)
        srv._thread.start()
        started.wait()
        asyncio.run_coroutine_threadsafe(srv.start(), loop).result(timeout=30)
        return srv

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            raise RuntimeError("stop() is for servers started with start_in_thread(); use aclose()")
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop = self._thread = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ request handling

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_response(
        self, status: int, message: str | None, error_type: str | None, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """The protocol's real error body for `status`."""
        raise NotImplementedError

    def check_request(self, request: web.Request, body: Any) -> web.Response | None:
        """Auth and validation, as the real API does them; an error response or None."""
        raise NotImplementedError

    async def answer(
        self, request: web.Request, body: dict[str, Any], reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        """The protocol's success response (JSON or SSE stream); `fault` is a stream_error."""
        raise NotImplementedError

    def new_id(self) -> str:
        return f"{next(self._ids):04d}{uuid.uuid4().hex[:20]}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            ReceivedRequest(request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body, raw)
        )
        problem = self.check_request(request, body)
        if problem is not None:
            return problem
        item: Item = self.queue.popleft() if self.queue else await self._from_reply_fn(body)
        fault = item if isinstance(item, Fault) else None
        if fault is not None:
            if fault.kind == "http":
                headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else None
                return self.error_response(fault.status, fault.message, fault.error_type, headers)
            if fault.kind == "drop":
                assert request.transport is not None
                request.transport.abort()
                # The client is gone; handler_cancellation cancels this wait.
                await asyncio.Event().wait()
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay_s)
            # A slow answer or a stream cut short still has content: the reply function's.
            item = await self._from_reply_fn(body)
        reply = _as_reply(item)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return await self.answer(
            request, body, reply, fault if fault is not None and fault.kind == "stream_error" else None
        )

    async def _from_reply_fn(self, body: dict[str, Any]) -> Item:
        out = self.reply_fn(body)
        if inspect.isawaitable(out):
            out = await out
        return out


def _as_reply(item: Item) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(item)
    raise TypeError(f"expected a Reply or a string after a slow or stream_error fault, got {item!r}")


# Imported last: both build on the classes above.
from fakes.anthropic_server import FakeAnthropic  # noqa: E402
from fakes.openai_server import FakeOpenAI  # noqa: E402

__all__ = ["Fault", "FakeAnthropic", "FakeOpenAI", "FakeServer", "ReceivedRequest", "Reply", "split_tokens"]
