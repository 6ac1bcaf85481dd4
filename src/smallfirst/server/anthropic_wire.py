"""Anthropic's Messages API wire format (POST /v1/messages): requests, answers, SSE events, errors.

Shapes are the real API's: a `message` with content blocks, stop_reason and usage; the event
sequence message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop; errors {"type": "error", "error": {"type", "message"}}, sent as an
`error` event when a stream fails after the 200.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smallfirst.backends.base import BackendError
from smallfirst.backends.http import HTTPBackendError, SSEEvent, error_detail
from smallfirst.server.wire import (
    Answer,
    ChatRequest,
    Delta,
    Finish,
    FinishReason,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    WireError,
    content_text,
    instructions_of,
    sse,
)

NAME = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
# Caller headers that change what the API does; forwarded when the frontier speaks this format.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")

_STOP_REASONS: dict[str, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                 "content_filter": "refusal"}
_FINISH: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                                    "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


# ---------------------------------------------------------------- the request, validated at the edge


class _Loose(BaseModel):
    # Fields this service does not read pass through to a frontier of the same format unchanged.
    model_config = ConfigDict(extra="allow")


class _Block(_Loose):
    type: str
    text: str | None = None


class _Message(_Loose):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _Tool(_Loose):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _Request(_Loose):
    # The fields read here or translated for an OpenAI frontier; the rest pass through.
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[_Message] = Field(min_length=1)
    system: str | list[_Block] | None = None
    stream: bool | None = None
    tools: list[_Tool] | None = None
    tool_choice: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)


def parse_request(raw: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    try:
        req = _Request.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union[", "list[")) and p != "str")
        raise WireError(f"{loc or 'body'}: {err['msg']}", loc or None) from None
    msgs: list[Mapping[str, Any]] = list(raw["messages"])
    last_user = next((m for m in reversed(msgs) if m.get("role") == "user"), None)
    task_text = content_text(last_user.get("content")) if last_user is not None else ""
    if not task_text.strip():
        # A turn that only returns tool results has no user text: the conversation is the input.
        task_text = "\n".join(t for t in (content_text(m.get("content"), tool_results=True) for m in msgs) if t)
    system = content_text(raw.get("system"))
    return ChatRequest(
        protocol=NAME,
        raw=raw,
        model=req.model,
        stream=bool(req.stream),
        task_text=task_text,
        instructions=instructions_of(system, task_text),
        has_tools=bool(req.tools),
        max_tokens=req.max_tokens,
        schema=_schema(raw),
        headers={k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS},
    )


def _schema(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Structured outputs: output_config.format (current) or output_format (beta)."""
    config = raw.get("output_config")
    fmt = (config.get("format") if isinstance(config, dict) else None) or raw.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise WireError("output_config.format.schema: Input should be a valid dictionary", "output_config.format.schema")
        return schema
    return None


# ---------------------------------------------------------------- answers


def render_answer(answer: Answer, msg_id: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        content.append({"type": "text", "text": answer.text})
    for c in answer.tool_calls:
        content.append({"type": "tool_use", "id": c.id, "name": c.name, "input": _json_object(c.arguments)})
    return {
        "id": "msg_" + msg_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": _STOP_REASONS[answer.finish],
        "stop_sequence": None,
        "usage": _usage(answer.tokens_in, answer.tokens_out),
    }


def _json_object(arguments: str) -> dict[str, Any]:
    # tool_use.input must be an object; a model that wrote broken arguments gets them as a string.
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def read_answer(body: Mapping[str, Any], default_model: str) -> Answer:
    """An upstream `message` as an Answer."""
    blocks = body.get("content")
    if not isinstance(blocks, list):
        raise BackendError("Anthropic response has no content blocks")
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    calls = tuple(
        ToolCall(str(b.get("id", "")), str(b.get("name", "")), json.dumps(b.get("input") or {}))
        for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"
    )
    usage = body.get("usage") or {}
    return Answer(
        text=text,
        model=str(body.get("model") or default_model),
        tool_calls=calls,
        finish=_FINISH.get(str(body.get("stop_reason")), "stop"),
        tokens_in=int(usage.get("input_tokens") or 0),
        tokens_out=int(usage.get("output_tokens") or 0),
        response_id=body["id"] if isinstance(body.get("id"), str) and body["id"] else None,
    )


def _usage(tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {"input_tokens": tokens_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": tokens_out}


# ---------------------------------------------------------------- streams


class StreamEncoder:
    """Neutral deltas -> the Messages API event sequence, opening and closing content blocks."""

    def __init__(self, msg_id: str, model: str, tokens_in: int = 0):
        self._message = {"id": "msg_" + msg_id, "type": "message", "role": "assistant", "model": model,
                         "content": [], "stop_reason": None, "stop_sequence": None, "usage": _usage(tokens_in, 0)}
        self._block = -1  # index of the open content block, -1 when none is open
        self._open: tuple[str, int] | None = None  # ("text", 0) or ("tool", tool index)

    @staticmethod
    def _event(kind: str, data: Mapping[str, Any]) -> bytes:
        return sse(json.dumps({"type": kind, **data}, ensure_ascii=False), kind)

    def start(self) -> bytes:
        return self._event("message_start", {"message": self._message}) + self._event("ping", {})

    def _switch(self, to: tuple[str, int], block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._open = to
        return out + self._event("content_block_start", {"index": self._block, "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return self._event("content_block_stop", {"index": self._block})

    def feed(self, d: Delta) -> bytes:
        if isinstance(d, TextDelta):
            if not d.text:
                return b""
            out = b"" if self._open == ("text", 0) else self._switch(("text", 0), {"type": "text", "text": ""})
            return out + self._event("content_block_delta", {"index": self._block, "delta": {"type": "text_delta", "text": d.text}})
        if isinstance(d, ToolCallDelta):
            out = b""
            if self._open != ("tool", d.index):
                block = {"type": "tool_use", "id": d.id or f"toolu_{d.index}", "name": d.name or "", "input": {}}
                out = self._switch(("tool", d.index), block)
            if d.arguments:
                out += self._event("content_block_delta", {"index": self._block,
                                                            "delta": {"type": "input_json_delta", "partial_json": d.arguments}})
            return out
        usage: dict[str, int] = {"output_tokens": d.tokens_out}
        if d.tokens_in:
            usage["input_tokens"] = d.tokens_in
        return (
            self._close()
            + self._event("message_delta", {"delta": {"stop_reason": _STOP_REASONS[d.reason], "stop_sequence": None},
                                            "usage": usage})
            + self._event("message_stop", {})
        )

    def error(self, message: str, etype: str = "api_error") -> bytes:
        return self._event("error", {"error": {"type": etype, "message": message}})


class StreamDecoder:
    """An upstream Messages event stream -> neutral deltas, with the token usage as it arrives."""

    def __init__(self, server: str):
        self.server = server
        self.done = False
        self.tokens_in = self.tokens_out = 0
        self.usage_only = False
        self.response_id: str | None = None
        self._finish: FinishReason = "stop"
        self._tools: dict[int, int] = {}  # content block index -> tool call ordinal

    def feed(self, ev: SSEEvent) -> list[Delta]:
        try:
            data = json.loads(ev.data)
        except ValueError:
            raise BackendError(f"{self.server}: stream event is not JSON: {ev.data[:80]}") from None
        if not isinstance(data, dict):
            raise BackendError(f"{self.server}: stream event is not a JSON object")
        kind = data.get("type", ev.event)
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [TextDelta(delta.get("text") or "")]
            if delta.get("type") == "input_json_delta" and data.get("index") in self._tools:
                return [ToolCallDelta(self._tools[data["index"]], arguments=delta.get("partial_json") or "")]
            return []
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                ordinal = self._tools[data.get("index", len(self._tools))] = len(self._tools)
                return [ToolCallDelta(ordinal, block.get("id"), block.get("name"))]
            return []
        if kind == "message_start":
            message = data.get("message") or {}
            if isinstance(message.get("id"), str) and message["id"]:
                self.response_id = message["id"]
            usage = message.get("usage") or {}
            self.tokens_in = int(usage.get("input_tokens") or 0)
            self.tokens_out = int(usage.get("output_tokens") or 0)
        elif kind == "message_delta":
            self._finish = _FINISH.get(str((data.get("delta") or {}).get("stop_reason")), "stop")
            usage = data.get("usage") or {}
            self.tokens_out = int(usage.get("output_tokens") or self.tokens_out)
            self.tokens_in = int(usage.get("input_tokens") or self.tokens_in)
        elif kind == "message_stop":
            return self.end()
        elif kind == "error":
            detail, etype = error_detail(ev.data.encode())
            raise HTTPBackendError(self.server, "error event after the answer began: " + detail,
                                   status=200, attempts=1, error_type=etype)
        return []

    def end(self) -> list[Delta]:
        if self.done:
            return []
        self.done = True
        return [Finish(self._finish, self.tokens_in, self.tokens_out)]


# ---------------------------------------------------------------- requests to an upstream in this format


def request_body(req: ChatRequest, model: str, *, max_tokens: int, stream: bool) -> dict[str, Any]:
    """The body for an Anthropic frontier: the caller's own when it spoke this format (only the
    model changes), otherwise the OpenAI request translated."""
    if req.protocol == NAME:
        return {**req.raw, "model": model, "stream": stream}
    return _from_openai(req.raw, model, req.max_tokens or max_tokens, stream)


def packet_body(system: str, messages: list[dict[str, str]], model: str, *, max_tokens: int, stream: bool) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "system": system, "messages": messages, "stream": stream}


def _from_openai(raw: Mapping[str, Any], model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        # The Messages API alternates roles; consecutive turns of one role become one.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for m in raw.get("messages") or ():
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(content_text(m.get("content")))
        elif role == "user":
            add("user", _blocks_from_openai(m.get("content")))
        elif role == "assistant":
            blocks = _blocks_from_openai(m.get("content"))
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    raise WireError(f"tool call {call.get('id')!r}: arguments are not JSON") from None
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
            add("assistant", blocks)
        else:  # tool (or the deprecated function) result
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or m.get("name"),
                          "content": content_text(m.get("content"))}])
    if not messages:
        raise WireError("the request has no user or assistant message to send to an Anthropic frontier")
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages, "stream": stream}
    if any(system):
        body["system"] = "\n\n".join(s for s in system if s)
    if raw.get("temperature") is not None:
        body["temperature"] = min(float(raw["temperature"]), 1.0)  # OpenAI allows up to 2
    if raw.get("top_p") is not None:
        body["top_p"] = raw["top_p"]
    stop = raw.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    functions = []
    for t in raw.get("tools") or ():
        if t.get("type", "function") != "function" or not isinstance(t.get("function"), dict):
            raise WireError(f"tool type {t.get('type')!r} cannot be translated to the Anthropic format")
        functions.append(t["function"])
    functions += list(raw.get("functions") or ())
    if functions:
        body["tools"] = [
            {"name": f.get("name"), "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
             **({"description": f["description"]} if f.get("description") else {})}
            for f in functions
        ]
        choice = raw.get("tool_choice")
        tc: dict[str, Any] = {"type": "auto"}
        if choice == "none":
            tc = {"type": "none"}
        elif choice == "required":
            tc = {"type": "any"}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            tc = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        if raw.get("parallel_tool_calls") is False and tc["type"] != "none":
            tc["disable_parallel_tool_use"] = True
        body["tool_choice"] = tc
    return body


def _blocks_from_openai(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = str((part.get("image_url") or {}).get("url") or "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise WireError(f"content part type {kind!r} cannot be translated to the Anthropic format")
    return blocks


# ---------------------------------------------------------------- errors and models


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def error_body(message: str, etype: str | None = None, *, status: int = 500, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype or ERROR_TYPES.get(status, "api_error"), "message": message}}


def models_body(task_names: list[str], created_at: str) -> dict[str, Any]:
    data = [{"type": "model", "id": n, "display_name": n, "created_at": created_at} for n in task_names]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
