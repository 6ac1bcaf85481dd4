"""A local server speaking OpenAI's /v1/chat/completions wire format.

Shapes follow the real API: `chat.completion` objects with choices[].message, finish_reason,
usage and (when asked) logprobs.content[].top_logprobs; `chat.completion.chunk` SSE streams
ending in `data: [DONE]`, with a usage chunk when stream_options.include_usage is set; and error
bodies {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

from aiohttp import web

from fakes import Fault, FakeServer, Reply, count_tokens, cut_at_stop, split_tokens

MAX_TOP_LOGPROBS = 20

# The message, type and code the real API sends for each status when nothing else is scripted.
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    408: ("Request timed out.", "server_error", None),
    409: ("Request conflicted with another request.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again in 1s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class FakeOpenAI(FakeServer):
    """`base_url` ends in /v1, as OpenAI SDKs and OpenAI-compatible clients expect."""

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        ids = sorted(self.models) if self.models is not None else ["fake-model"]
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in ids]
        return web.json_response({"object": "list", "data": data})

    def error_response(
        self,
        status: int,
        message: str | None,
        error_type: str | None,
        headers: Mapping[str, str] | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> web.Response:
        default_msg, default_type, default_code = _ERRORS.get(
            status, ("Error.", "server_error" if status >= 500 else "invalid_request_error", None)
        )
        body = {
            "error": {
                "message": message or default_msg,
                "type": error_type or default_type,
                "param": param,
                "code": code if code is not None else (default_code if message is None else None),
            }
        }
        return web.json_response(
            body, status=status, headers={"x-request-id": "req_" + self.new_id(), **(headers or {})}
        )

    def check_request(self, request: web.Request, body: Any) -> web.Response | None:
        if self.api_key is not None:
            auth = request.headers.get("authorization", "")
            if not auth:
                return self.error_response(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                )
            if auth != f"Bearer {self.api_key}":
                given = auth.removeprefix("Bearer ")
                masked = given[:3] + "*" * max(0, len(given) - 7) + given[-4:] if len(given) > 7 else "***"
                return self.error_response(
                    401, f"Incorrect API key provided: {masked}.", "invalid_request_error", code="invalid_api_key"
                )
        if not isinstance(body, dict):
            return self.error_response(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not body.get("model"):
            return self.error_response(400, "you must provide a model parameter", "invalid_request_error")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.error_response(
                400,
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                param="messages",
                code="missing_required_parameter",
            )
        if self.models is not None and body["model"] not in self.models:
            return self.error_response(
                404,
                f"The model `{body['model']}` does not exist or you do not have access to it.",
                "invalid_request_error",
                code="model_not_found",
            )
        top = body.get("top_logprobs")
        if top is not None:
            if not body.get("logprobs"):
                return self.error_response(
                    400,
                    "logprobs must be set to true if top_logprobs is set.",
                    "invalid_request_error",
                    param="top_logprobs",
                )
            if not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
                return self.error_response(
                    400,
                    f"Invalid 'top_logprobs': integer between 0 and {MAX_TOP_LOGPROBS} expected.",
                    "invalid_request_error",
                    param="top_logprobs",
                )
        return None

    # ------------------------------------------------------------ answers

    async def answer(
        self, request: web.Request, body: dict[str, Any], reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        tokens, finish = _generated(body, reply)
        want_logprobs = bool(body.get("logprobs")) and reply.logprobs
        entries = [_logprob_entry(tok, reply, i, int(body.get("top_logprobs") or 0)) for i, tok in enumerate(tokens)]
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else count_tokens(body["messages"])
        usage = _usage(prompt_tokens, len(tokens))
        head = {"id": "chatcmpl-" + self.new_id(), "created": int(time.time()), "model": body["model"]}
        headers = {"x-request-id": "req_" + self.new_id()}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(tokens), "refusal": None, "annotations": []}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": {"content": entries, "refusal": None} if want_logprobs else None,
                "finish_reason": finish,
            }
            payload = {
                **head,
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
            return web.json_response(payload, headers=headers)

        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **headers}
        )
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {**head, "object": "chat.completion.chunk", "service_tier": "default", "system_fingerprint": "fp_fake"}

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**base, "choices": choices, **extra}
            if include_usage and "usage" not in extra:
                chunk["usage"] = None
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        def delta_choice(
            delta: dict[str, Any], logprobs: Any = None, finish_reason: str | None = None
        ) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

        await send([delta_choice({"role": "assistant", "content": "", "refusal": None})])
        # A stream_error fault cuts the answer short: a couple of deltas, then the error.
        cut = min(2, len(tokens) // 2) if fault is not None else len(tokens)
        for tok, entry in zip(tokens[:cut], entries[:cut], strict=True):
            lp = {"content": [entry], "refusal": None} if want_logprobs else None
            await send([delta_choice({"content": tok}, lp)])
        if fault is not None:
            err = self.error_response(fault.status, fault.message, fault.error_type)
            await resp.write(b"data: " + bytes(err.body) + b"\n\n")  # type: ignore[arg-type]
            await resp.write_eof()
            return resp
        await send([delta_choice({}, None, finish)])
        if include_usage:
            await send([], usage=usage)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _generated(body: Mapping[str, Any], reply: Reply) -> tuple[list[str], str]:
    """The tokens the model 'generates' under the request's stop and max_tokens, and why it ended."""
    tokens = reply.token_list()
    stops = body.get("stop") or []
    text, hit = cut_at_stop("".join(tokens), [stops] if isinstance(stops, str) else list(stops))
    if hit is not None:
        tokens = split_tokens(text)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and len(tokens) > limit:
        tokens, finish = tokens[:limit], "length"
    return tokens, reply.finish_reason or finish


def _logprob_entry(token: str, reply: Reply, position: int, top_n: int) -> dict[str, Any]:
    alts = dict(reply.top_logprobs[position]) if position < len(reply.top_logprobs) else {}
    alts.setdefault(token, reply.token_logprob)
    ranked = sorted(alts.items(), key=lambda kv: kv[1], reverse=True)[:top_n]
    return {
        "token": token,
        "logprob": alts[token],
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked],
    }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
