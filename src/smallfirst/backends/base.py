"""The one small interface every model protocol implements.

A local backend answers a task in the task's own terms (a label with probabilities, a JSON
document, a summary). A frontier backend answers a chat: the escalation packet as messages.
Server backends (openai_compat, anthropic) implement both, so an Ollama or vLLM server can be
the local model and a paid API the frontier one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from smallfirst.tasks import FrontierAnswer, LocalOutput

if TYPE_CHECKING:
    from smallfirst.policy import TaskSpec


class BackendError(Exception):
    """A model could not answer: crashed, timed out, refused the connection, bad response.
    The router turns it into an escalation with reason local_error (or a 502 on the frontier)."""


@runtime_checkable
class LocalBackend(Protocol):
    name: str
    sha256: str | None

    async def complete(self, text: str, spec: "TaskSpec") -> LocalOutput: ...


@runtime_checkable
class FrontierBackend(Protocol):
    name: str

    async def chat(
        self, messages: list[dict[str, str]], *, system: str | None = None, max_tokens: int = 1024
    ) -> FrontierAnswer: ...
