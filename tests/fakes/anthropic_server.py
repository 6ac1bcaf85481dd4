"""A local server speaking Anthropic's Messages API (POST /v1/messages).

Shapes follow the real API: headers x-api-key and anthropic-version are required; a `message`
object with content blocks, stop_reason, stop_sequence and usage; the SSE event sequence
message_start, content_block_start, ping, content_block_delta (text_delta)..., content_block_stop,
message_delta, message_stop; and error bodies {"type": "error", "error": {"type", "message"},
"request_id"}, also sent as an `error` event when a stream fails after the 200.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Mapping

from aiohttp import web

from fakes import Fault, FakeServer, Reply, count_tokens, cut_at_stop, split_tokens

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error_type(status: int) -> tuple[str, str]:
    if status in _ERRORS:
        return _ERRORS[status]
    return ("api_error", "Internal server error") if status >= 500 else ("invalid_request_error", "Invalid request.")


class FakeAnthropic(FakeServer):
    """`base_url` is the origin without /v1, as the Anthropic SDKs expect."""

    @property
    def base_url(self) -> str:
        return self.origin

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.handle)

    def _request_id(self) -> str:
        return "req_" + secrets.token_hex(12)

    def error_body(self, status: int, message: str | None, error_type: str | None) -> dict[str, Any]:
        default_type, default_msg = _error_type(status)
        return {
            "type": "error",
            "error": {"type": error_type or default_type, "message": message or default_msg},
            "request_id": self._request_id(),
        }

    def error_response(
        self, status: int, message: str | None, error_type: str | None, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = self.error_body(status, message, error_type)
        return web.json_response(body, status=status, headers={"request-id": body["request_id"], **(headers or {})})

    def check_request(self, request: web.Request, body: Any) -> web.Response | None:
        key = request.headers.get("x-api-key")
        if self.api_key is not None and not key:
            return self.error_response(401, "x-api-key header is required", "authentication_error")
        if self.api_key is not None and key != self.api_key:
            return self.error_response(401, "invalid x-api-key", "authentication_error")
        if not request.headers.get("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required", "invalid_request_error")
        if not isinstance(body, dict):
            return self.error_response(
                400, "There was an issue with the format of your request body: not valid JSON", "invalid_request_error"
            )
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                return self.error_response(400, f"{required}: Field required", "invalid_request_error")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return self.error_response(
                400, "max_tokens: Input should be greater than or equal to 1", "invalid_request_error"
            )
        if not isinstance(body["messages"], list) or not body["messages"]:
            return self.error_response(400, "messages: at least one message is required", "invalid_request_error")
        for i, m in enumerate(body["messages"]):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ("user", "assistant"):
                return self.error_response(
                    400,
                    f'messages.{i}.role: Unexpected role "{role}". The Messages API accepts a top-level `system` '
                    f'parameter, not "{role}" as an input message role.',
                    "invalid_request_error",
                )
        if self.models is not None and body["model"] not in self.models:
            return self.error_response(404, f"model: {body['model']}", "not_found_error")
        return None

    # ------------------------------------------------------------ answers

    async def answer(
        self, request: web.Request, body: dict[str, Any], reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        tokens = reply.token_list()
        text, stop_sequence = cut_at_stop("".join(tokens), body.get("stop_sequences") or [])
        if stop_sequence is not None:
            tokens = split_tokens(text)
        stop_reason = "stop_sequence" if stop_sequence is not None else "end_turn"
        if len(tokens) > body["max_tokens"]:
            tokens, stop_reason = tokens[: body["max_tokens"]], "max_tokens"
        stop_reason = reply.finish_reason or stop_reason
        input_tokens = (
            reply.prompt_tokens
            if reply.prompt_tokens is not None
            else count_tokens(body["messages"]) + count_tokens(body.get("system") or "")
        )
        request_id = self._request_id()
        message = {
            "id": "msg_01" + self.new_id(),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "".join(tokens)}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": _usage(input_tokens, len(tokens)),
        }
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": request_id})

        resp = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": request_id,
            }
        )
        await resp.prepare(request)

        async def send(event: str, data: Mapping[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": _usage(input_tokens, 1)}
        await send("message_start", {"type": "message_start", "message": start})
        await send(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        await send("ping", {"type": "ping"})
        # A stream_error fault cuts the answer short: a couple of deltas, then the error event.
        cut = min(2, len(tokens) // 2) if fault is not None else len(tokens)
        for tok in tokens[:cut]:
            await send(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": tok}},
            )
        if fault is not None:
            err = self.error_body(fault.status, fault.message, fault.error_type)
            del err["request_id"]  # stream error events carry only type and error
            await send("error", err)
            await resp.write_eof()
            return resp
        await send("content_block_stop", {"type": "content_block_stop", "index": 0})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": len(tokens)},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
