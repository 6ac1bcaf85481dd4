"""A policy's `models` entry -> the backend for its `provider`.

Imports are lazy so that `smallfirst route --task propose_code_change` never loads numpy models
or llama.cpp, and a missing optional piece only fails the task that needs it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from smallfirst.backends.base import BackendError

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, Policy

__all__ = ["frontier_configured", "make_backend"]


def make_backend(spec: "ModelSpec", policy: "Policy") -> Any:
    if spec.provider == "embedding":
        from smallfirst.backends.embedding import EmbeddingBackend

        return EmbeddingBackend(spec, policy)
    if spec.provider == "llamacpp":
        from smallfirst.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec)
    if spec.provider == "openai_compat":
        from smallfirst.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(spec)
    if spec.provider == "anthropic":
        from smallfirst.backends.anthropic import AnthropicBackend

        return AnthropicBackend(spec)
    raise BackendError(f"unknown provider {spec.provider!r}")


def frontier_configured(spec: "ModelSpec") -> bool:
    """A frontier needs a reachable API: a key in the environment for hosted APIs, a URL for
    OpenAI-compatible servers (local ones take no key)."""
    if spec.provider == "anthropic":
        return bool(spec.api_key_env and os.environ.get(spec.api_key_env))
    if spec.provider == "openai_compat":
        return bool(spec.base_url) and (not spec.api_key_env or bool(os.environ.get(spec.api_key_env)))
    return False  # an embedded model is never a frontier
