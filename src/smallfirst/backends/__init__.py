"""Backends: one module per model protocol, all behind one small interface.

    base           BackendError and the LocalBackend / FrontierBackend protocols
    providers      make_backend: a policy's `models` entry -> its backend, imported only when used
    http           the HTTP client the server backends share
    embedding      the embedding classifier (all-MiniLM-L6-v2, zero-shot or a trained head)
    minilm         the pinned MiniLM model and its numpy reference encoder
    minilm_onnx    the same model in int8 on ONNX Runtime
    llamacpp       in-process GGUF models
    openai_compat  any /v1/chat/completions server
    anthropic      the Anthropic Messages API

This file imports nothing, so a backend module can import its siblings without waiting on it.
"""
