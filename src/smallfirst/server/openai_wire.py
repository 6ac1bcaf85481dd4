"""OpenAI's /v1/chat/completions wire format: requests, answers, SSE chunks, errors.

Shapes are the real API's: `chat.completion` objects, `chat.completion.chunk` streams that end
with `data: [DONE]` (a usage chunk with empty choices before it only when the caller set
stream_options.include_usage), and errors {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import time
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

NAME = "openai"
_DONE = b"data: [DONE]\n\n"


# ---------------------------------------------------------------- the request, validated at the edge


class _Loose(BaseModel):
    # Fields this service does not read pass through to a frontier of the same format unchanged.
    model_config = ConfigDict(extra="allow")


class _Function(_Loose):
    name: str
    arguments: str = ""


class _ToolCall(_Loose):
    id: str
    type: str = "function"
    function: _Function


class _Part(_Loose):
    type: str
    text: str | None = None


class _Message(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionDef(_Loose):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(_Loose):
    type: str = "function"
    function: _FunctionDef | None = None


class _StreamOptions(_Loose):
    include_usage: bool | None = None


class _Request(_Loose):
    # The fields read here or translated for an Anthropic frontier; the rest pass through.
    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None
    functions: list[_FunctionDef] | None = None  # the deprecated form of tools
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1)  # one choice: a local model answers once
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    response_format: dict[str, Any] | None = None


def parse_request(raw: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    try:
        req = _Request.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = _param(err["loc"])
        raise WireError(f"Invalid value for '{param}': {err['msg']}", param) from None
    # Validated above, so the raw messages are dicts with a known role; text is read from them.
    msgs: list[Mapping[str, Any]] = list(raw["messages"])
    last_user = next((m for m in reversed(msgs) if m.get("role") == "user"), None)
    task_text = content_text(last_user.get("content")) if last_user is not None else ""
    if not task_text.strip():
        # A turn that only returns tool results has no user text: the conversation is the input.
        task_text = "\n".join(t for t in (content_text(m.get("content")) for m in msgs) if t)
    system = "\n".join(content_text(m.get("content")) for m in msgs if m.get("role") in ("system", "developer"))
    schema = None
    rf = req.response_format or {}
    if rf.get("type") == "json_schema" and isinstance(rf.get("json_schema"), dict):
        schema = rf["json_schema"].get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise WireError("Invalid value for 'response_format.json_schema.schema': expected an object",
                            "response_format.json_schema.schema")
    return ChatRequest(
        protocol=NAME,
        raw=raw,
        model=req.model,
        stream=bool(req.stream),
        task_text=task_text,
        instructions=instructions_of(system, task_text),
        has_tools=bool(req.tools or req.functions),
        max_tokens=req.max_completion_tokens or req.max_tokens,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        schema=schema,
    )


def _param(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[_Part]", "none") or str(part).startswith(("function-", "union[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


# ---------------------------------------------------------------- answers


def render_answer(answer: Answer, msg_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.text or not answer.tool_calls else None,
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.tool_calls
        ]
    return {
        "id": "chatcmpl-" + msg_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}],
        "usage": _usage(answer.tokens_in, answer.tokens_out),
        "system_fingerprint": None,
    }


def read_answer(body: Mapping[str, Any], default_model: str) -> Answer:
    """An upstream chat.completion as an Answer."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendError("OpenAI-format response has no choices")
    message = choices[0].get("message") or {}
    calls = tuple(
        ToolCall(str(c.get("id", "")), str((c.get("function") or {}).get("name", "")),
                 str((c.get("function") or {}).get("arguments", "")))
        for c in message.get("tool_calls") or () if isinstance(c, dict)
    )
    usage = body.get("usage") or {}
    return Answer(
        text=message.get("content") or "",
        model=str(body.get("model") or default_model),
        tool_calls=calls,
        finish=_finish(choices[0].get("finish_reason")),
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
        response_id=_id(body),
    )


def _id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and value else None


def _finish(reason: Any) -> FinishReason:
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


# ---------------------------------------------------------------- streams


class StreamEncoder:
    """Neutral deltas -> chat.completion.chunk events."""

    def __init__(self, msg_id: str, model: str, include_usage: bool):
        self.include_usage = include_usage
        self._head = {"id": "chatcmpl-" + msg_id, "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": model, "system_fingerprint": None}
        self._tools_seen: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {**self._head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            chunk["usage"] = None
        return sse(json.dumps(chunk, ensure_ascii=False))

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def feed(self, d: Delta) -> bytes:
        if isinstance(d, TextDelta):
            return self._chunk({"content": d.text}) if d.text else b""
        if isinstance(d, ToolCallDelta):
            call: dict[str, Any] = {"index": d.index}
            if d.index not in self._tools_seen:
                self._tools_seen.add(d.index)
                call.update(id=d.id or f"call_{d.index}", type="function")
                call["function"] = {"name": d.name or "", "arguments": d.arguments}
            else:
                call["function"] = {"arguments": d.arguments}
            return self._chunk({"tool_calls": [call]})
        out = self._chunk({}, d.reason)
        if self.include_usage:
            out += sse(json.dumps({**self._head, "choices": [], "usage": _usage(d.tokens_in, d.tokens_out)}))
        return out + _DONE

    def error(self, message: str, etype: str = "server_error") -> bytes:
        # After the 200 the real API reports a failure as a data event holding an error object.
        return sse(json.dumps(error_body(message, etype), ensure_ascii=False))


class StreamDecoder:
    """An upstream chunk stream -> neutral deltas, with the token usage when it is sent."""

    def __init__(self, server: str):
        self.server = server
        self.done = False
        self.tokens_in = self.tokens_out = 0
        self.usage_only = False  # the last event was the include_usage chunk (no choices)
        self.response_id: str | None = None
        self._finish: FinishReason = "stop"

    def feed(self, ev: SSEEvent) -> list[Delta]:
        self.usage_only = False
        if ev.data.strip() == "[DONE]":
            return self.end()
        try:
            chunk = json.loads(ev.data)
        except ValueError:
            raise BackendError(f"{self.server}: stream chunk is not JSON: {ev.data[:80]}") from None
        if not isinstance(chunk, dict):
            raise BackendError(f"{self.server}: stream chunk is not a JSON object")
        if isinstance(chunk.get("error"), dict):
            detail, etype = error_detail(ev.data.encode())
            raise HTTPBackendError(self.server, "error event after the answer began: " + detail,
                                   status=200, attempts=1, error_type=etype)
        if self.response_id is None:
            self.response_id = _id(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.tokens_in = int(usage.get("prompt_tokens") or 0)
            self.tokens_out = int(usage.get("completion_tokens") or 0)
        choices = chunk.get("choices") or []
        self.usage_only = not choices and isinstance(usage, dict)
        out: list[Delta] = []
        for choice in choices[:1]:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(TextDelta(delta["content"]))
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                out.append(ToolCallDelta(int(call.get("index") or 0), call.get("id"), fn.get("name"), fn.get("arguments") or ""))
            if choice.get("finish_reason"):
                self._finish = _finish(choice["finish_reason"])
        return out

    def end(self) -> list[Delta]:
        if self.done:
            return []
        self.done = True
        return [Finish(self._finish, self.tokens_in, self.tokens_out)]


# ---------------------------------------------------------------- requests to an upstream in this format


def request_body(req: ChatRequest, model: str, *, max_tokens: int, max_tokens_key: str, stream: bool) -> dict[str, Any]:
    """The body for an OpenAI-format frontier: the caller's own when it spoke this format (only
    the model changes), otherwise the Anthropic request translated."""
    if req.protocol == NAME:
        body = {**req.raw, "model": model}
    else:
        body = _from_anthropic(req.raw, model, max_tokens_key)
    body["stream"] = stream
    if stream:
        # Usage arrives only when asked for; the audit needs it. A caller that did not ask does
        # not get the extra chunk (the relay drops it).
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    if not any(k in body for k in ("max_tokens", "max_completion_tokens")):
        body[max_tokens_key] = max_tokens
    return body


def packet_body(system: str, messages: list[dict[str, str]], model: str, *, max_tokens: int,
                max_tokens_key: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "system", "content": system}, *messages],
                            max_tokens_key: max_tokens, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _from_anthropic(raw: Mapping[str, Any], model: str, max_tokens_key: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = content_text(raw.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for m in raw.get("messages") or ():
        content = m.get("content")
        if isinstance(content, str):
            messages.append({"role": m["role"], "content": content})
        elif m.get("role") == "assistant":
            messages.append(_assistant_from_blocks(content or []))
        else:
            messages.extend(_user_from_blocks(content or []))
    body: dict[str, Any] = {"model": model, "messages": messages, max_tokens_key: raw.get("max_tokens")}
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if raw.get(src) is not None:
            body[dst] = raw[src]
    if raw.get("tools"):
        body["tools"] = [_tool_from_anthropic(t) for t in raw["tools"]]
    choice = raw.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(kind) or (
            {"type": "function", "function": {"name": choice.get("name")}} if kind == "tool" else "auto"
        )
        if choice.get("disable_parallel_tool_use"):
            body["parallel_tool_calls"] = False
    return body


def _assistant_from_blocks(blocks: list[Any]) -> dict[str, Any]:
    text, calls = [], []
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            text.append(b.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": b.get("id"), "type": "function",
                          "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # another vendor's reasoning trace; it cannot be replayed to this one
        else:
            raise WireError(f"assistant content block type {kind!r} cannot be translated to the OpenAI format")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _user_from_blocks(blocks: list[Any]) -> list[dict[str, Any]]:
    # Tool results answer the previous assistant turn, so they come first, one message each.
    tools, parts = [], []
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "tool_result":
            text = content_text(b.get("content"), tool_results=True)
            tools.append({"role": "tool", "tool_call_id": b.get("tool_use_id"),
                          "content": ("error: " + text) if b.get("is_error") else text})
        elif kind == "text":
            parts.append({"type": "text", "text": b.get("text") or ""})
        elif kind == "image":
            src = b.get("source") or {}
            url = src.get("url") if src.get("type") == "url" else f"data:{src.get('media_type')};base64,{src.get('data')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise WireError(f"user content block type {kind!r} cannot be translated to the OpenAI format")
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _tool_from_anthropic(t: Mapping[str, Any]) -> dict[str, Any]:
    if "input_schema" not in t:
        raise WireError(f"tool {t.get('name')!r} of type {t.get('type')!r} is an Anthropic server tool; "
                        "it cannot be translated to the OpenAI format")
    fn: dict[str, Any] = {"name": t.get("name"), "parameters": t.get("input_schema")}
    if t.get("description"):
        fn["description"] = t["description"]
    return {"type": "function", "function": fn}


# ---------------------------------------------------------------- errors and models


ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
               404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_body(message: str, etype: str | None = None, *, status: int = 500, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype or ERROR_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def models_body(task_names: list[str], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "smallfirst"}
                                        for n in task_names]}
