"""What the server backends share: one aiohttp session per event loop, retries, SSE reading.

A request is retried when trying again can help: the connection failed or dropped, the attempt
timed out, or the server said so (408, 409, 429, 5xx, and Anthropic's 529). Any other 4xx is the
caller's mistake (bad key, bad body) and fails at once. Every failure surfaces as one
`HTTPBackendError` that names the server, the status and the number of attempts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp

from smallfirst.backends.base import BackendError

DEFAULT_BACKOFF_S = 0.5  # first retry waits about this long; each later one about twice as long
MAX_BACKOFF_S = 8.0
# A server may ask for a long pause (Retry-After: 60); an agent step waiting that long is worse
# than escalating, so the wait is capped and the attempt budget still applies.
MAX_RETRY_AFTER_S = 20.0
_ERROR_TEXT_CHARS = 300
# One encoder for every request body: json.dumps builds a new one per call when given an option.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


class HTTPBackendError(BackendError):
    """A server backend could not answer. `status` is the last HTTP status (None when no response
    came back: refused, timed out, dropped); `attempts` counts the requests made."""

    def __init__(
        self,
        server: str,
        detail: str,
        *,
        status: int | None,
        attempts: int,
        error_type: str | None = None,
    ):
        self.server, self.detail, self.status, self.attempts = server, detail, status, attempts
        self.error_type = error_type
        what = f"HTTP {status}" if status is not None else "no response"
        if error_type:
            what += f" {error_type}"
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        super().__init__(f"{server}: {what}: {detail} (after {tries})")


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def retry_delay(
    attempt: int,
    retry_after: str | None,
    *,
    backoff_s: float = DEFAULT_BACKOFF_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    The server's Retry-After wins when it parses (seconds or an HTTP date), capped; otherwise
    exponential backoff with "equal jitter", so clients that failed together do not retry together.
    """
    asked = parse_retry_after(retry_after)
    if asked is not None:
        return min(asked, MAX_RETRY_AFTER_S)
    step = min(MAX_BACKOFF_S, backoff_s * 2 ** (attempt - 1))
    return step / 2 + rand() * step / 2


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- one session per event loop

# aiohttp sessions belong to the loop that created them. The router usually runs in one loop, but
# sync callers (CLI, tests) run one asyncio.run() per call, so sessions are kept per loop.
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    s = _sessions.get(loop)
    if s is None or s.closed:
        # Sessions of loops that have ended cannot be closed any more; forget them.
        for dead in [lp for lp in _sessions if lp.is_closed()]:
            del _sessions[dead]
        s = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            # Per-request timeouts are passed on each call.
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            # One session serves every caller: a cookie one frontier answer sets must not ride
            # along on the next caller's request (and skipping the jar saves work per request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _sessions[loop] = s
    return s


async def aclose() -> None:
    """Close this loop's session (a later request opens a new one). Call before the loop ends."""
    s = _sessions.pop(asyncio.get_running_loop(), None)
    if s is not None and not s.closed:
        await s.close()


# ---------------------------------------------------------------- requests


@functools.lru_cache(maxsize=256)
def server_label(url: str) -> str:
    """How errors name a server: scheme, host, port and path, never a query string or key."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def error_detail(body: bytes) -> tuple[str, str | None]:
    """The server's own message and error type from an error body, for the shapes in use:
    OpenAI {"error": {"message", "type"}}, Anthropic {"type": "error", "error": {...}},
    Ollama {"error": "..."}, older vLLM {"object": "error", "message", "type"}."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return (text[:_ERROR_TEXT_CHARS] or "empty body"), None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err[:_ERROR_TEXT_CHARS], None
        if isinstance(err, dict) and "message" in err:
            etype = err.get("type") or err.get("code")
            return str(err["message"])[:_ERROR_TEXT_CHARS], (str(etype) if etype else None)
    return text[:_ERROR_TEXT_CHARS], None


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"timed out after {timeout_s:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    return f"{type(exc).__name__}: {exc}"


# Failures where no (complete) response came back; all worth another attempt.
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class _RetryableStatus(Exception):
    """An answer worth trying again (429, 5xx ...): carries the error to raise when out of tries."""

    def __init__(self, error: HTTPBackendError, retry_after: str | None):
        self.error, self.retry_after = error, retry_after


async def _open(
    url: str, data: bytes, headers: Mapping[str, str], timeout: aiohttp.ClientTimeout, attempt: int
) -> aiohttp.ClientResponse:
    """One attempt: a 2xx response, still open for its body (the caller releases it), or an error."""
    resp = await session().post(url, data=data, headers=headers, timeout=timeout)
    if 200 <= resp.status < 300:
        return resp
    try:
        detail, etype = error_detail(await resp.read())
    finally:
        resp.release()
    error = HTTPBackendError(server_label(url), detail, status=resp.status, attempts=attempt, error_type=etype)
    if not is_retryable_status(resp.status):
        raise error
    raise _RetryableStatus(error, resp.headers.get("retry-after"))


async def _with_retries(
    attempt_fn: Callable[[int], Any], server: str, *, timeout_s: float, retries: int, backoff_s: float
) -> Any:
    """Run `attempt_fn(attempt)` until it returns, retrying transport failures and retryable
    statuses up to `retries` times with backoff (honouring Retry-After)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await attempt_fn(attempt)
        except _RetryableStatus as exc:
            if attempt > retries:
                raise exc.error from None
            retry_after = exc.retry_after
        except _TRANSPORT_ERRORS as exc:
            if attempt > retries:
                raise HTTPBackendError(server, _describe(exc, timeout_s), status=None, attempts=attempt) from exc
            retry_after = None
        await asyncio.sleep(retry_delay(attempt, retry_after, backoff_s=backoff_s))


async def post_json(
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> dict[str, Any]:
    """POST a JSON body, return the JSON object answered; retry what is worth retrying."""
    answer, _ = await post_json_raw(url, body, headers, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
    return answer


async def post_json_raw(
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> tuple[dict[str, Any], bytes]:
    """post_json, and the answer's bytes as they came, for a proxy to pass on without re-encoding."""
    data = _to_json(body).encode()
    hdrs = {"content-type": "application/json", **headers}
    timeout = _timeout(timeout_s)
    server = server_label(url)

    async def attempt_fn(attempt: int) -> tuple[dict[str, Any], bytes]:
        resp = await _open(url, data, hdrs, timeout, attempt)
        try:
            raw = await resp.read()  # inside the attempt: a body that times out is retried too
        finally:
            resp.release()
        try:
            answer = json.loads(raw)
        except ValueError:
            raise HTTPBackendError(
                server, "response is not JSON: " + raw[:80].decode("utf-8", "replace"), status=200, attempts=attempt
            ) from None
        if not isinstance(answer, dict):
            raise HTTPBackendError(server, "response is not a JSON object", status=200, attempts=attempt)
        return answer, raw

    return await _with_retries(attempt_fn, server, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)


@functools.lru_cache(maxsize=64)
def _timeout(total_s: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total_s)  # frozen; one per distinct timeout, not per request


# ---------------------------------------------------------------- server-sent events


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" when the server named none (OpenAI sends none)
    data: str


async def post_sse(
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> AsyncIterator[SSEEvent]:
    """POST a JSON body and yield the server-sent events of the answer.

    Retries apply until the server answers 200; once events flow, a failure is raised, because
    the caller has already seen part of the answer. `timeout_s` bounds connecting and each wait
    for the next bytes, not the whole stream, which may legitimately run for minutes.
    """
    data = _to_json(body).encode()
    hdrs = {"content-type": "application/json", "accept": "text/event-stream", **headers}
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    server = server_label(url)
    resp, attempts = await _with_retries(
        lambda attempt: _open_counted(url, data, hdrs, timeout, attempt),
        server, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
    )
    try:
        async for event in _read_events(resp.content):
            yield event
    except _TRANSPORT_ERRORS as exc:
        raise HTTPBackendError(
            server, "stream broke: " + _describe(exc, timeout_s), status=200, attempts=attempts
        ) from exc
    finally:
        resp.release()


async def _open_counted(
    url: str, data: bytes, headers: Mapping[str, str], timeout: aiohttp.ClientTimeout, attempt: int
) -> tuple[aiohttp.ClientResponse, int]:
    return await _open(url, data, headers, timeout, attempt), attempt


async def _read_events(stream: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """The SSE framing (WHATWG): `field: value` lines, a blank line ends an event, `:` comments."""
    event, data = "", []
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:  # a last event without its blank line
        yield SSEEvent(event or "message", "\n".join(data))
