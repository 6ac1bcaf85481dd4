"""What the two wire formats have in common: a caller's request as the router needs it, an
answer, and the deltas a streamed answer is made of.

`openai_wire` and `anthropic_wire` each turn their format into these and back, and translate a
request written in the other format into theirs, so a caller of either API can be answered by a
frontier that speaks either one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

Protocol = Literal["openai", "anthropic"]
# The neutral finish reasons are OpenAI's words; anthropic_wire maps them to its own.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class WireError(ValueError):
    """A request body the format does not allow; answered 400 in the caller's error format."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ChatRequest:
    """A validated request in the caller's format, with what routing needs pulled out."""

    protocol: Protocol
    raw: Mapping[str, Any]  # the body as sent; forwarded unchanged to a frontier of the same format
    model: str
    stream: bool
    task_text: str  # what a local model answers: the last user turn's text
    instructions: str  # system prompt and the first line of the last user turn: what `auto` reads
    has_tools: bool
    max_tokens: int | None
    include_usage: bool = False  # OpenAI stream_options.include_usage
    schema: Mapping[str, Any] | None = None  # a JSON Schema the caller asked the answer to match
    headers: Mapping[str, str] = field(default_factory=dict)  # caller headers forwarded upstream


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON document, as OpenAI carries it


@dataclass(frozen=True)
class Answer:
    text: str
    model: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish: FinishReason = "stop"
    tokens_in: int = 0
    tokens_out: int = 0
    response_id: str | None = None  # the upstream's id for it, when it came from one


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """Part of the index-th tool call: the first carries id and name, later ones more arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    tokens_in: int = 0
    tokens_out: int = 0


Delta = Union[TextDelta, ToolCallDelta, Finish]


def content_text(content: Any, *, tool_results: bool = False) -> str:
    """The text of one message's content in either format: a string, or a list of parts/blocks
    of type text (and, when asked, the text inside tool results)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif tool_results and kind == "tool_result":
            parts.append(content_text(block.get("content"), tool_results=True))
    return "\n".join(p for p in parts if p)


def sse(data: str, event: str | None = None) -> bytes:
    """One server-sent event; multi-line data becomes one data: line per line, as the spec says."""
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


# `auto` reads what the agent asks for, not the log pasted after it: the system prompt and the
# first line of the user's turn, each cut to this many characters.
INSTRUCTION_CHARS = 300


def instructions_of(system: str, task_text: str) -> str:
    first_line = next((ln for ln in task_text.splitlines() if ln.strip()), "")
    return "\n".join(p.strip()[:INSTRUCTION_CHARS] for p in (system, first_line) if p.strip())
