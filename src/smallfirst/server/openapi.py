"""The service's OpenAPI 3.1 document (GET /openapi.json).

The two model APIs are described by the fields this service reads; everything else a caller
sends is allowed and forwarded to a frontier of the same format. The task types of the policy
in force are listed as the model enum's examples.
"""

from __future__ import annotations

from typing import Any

from smallfirst import __version__

_ROUTE_HEADERS = {
    name: {"description": text, "schema": {"type": "string"}}
    for name, text in (
        ("x-smallfirst-route", "local, frontier or rejected"),
        ("x-smallfirst-reason", "the FallbackReason that left the local path, or none"),
        ("x-smallfirst-decision-id", "the audit record of this decision"),
        ("x-smallfirst-model", "the model whose answer this is"),
        ("x-smallfirst-confidence", "the local model's calibrated confidence, or none"),
    )
}

_PLAIN_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_CALLER_HEADERS = [
    {"name": "X-Smallfirst-Task", "in": "header", "required": False, "schema": _PLAIN_NAME,
     "description": "task type; overrides model smallfirst/<task>"},
    {"name": "X-Smallfirst-User-Group", "in": "header", "required": False, "schema": _PLAIN_NAME,
     "description": "user group for the rollout (an API key mapped in the policy wins)"},
    {"name": "X-Smallfirst-Task-Id", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "the caller's id for this step, stored in the audit record"},
]

# Input with no visible character is rejected (400, "input is empty"); say so in the schema.
_TEXT = {"type": "string", "pattern": "\\S"}
_TEXT_OR_PARTS = {
    "oneOf": [
        _TEXT,
        {"type": "array", "items": {"type": "object", "required": ["type"],
                                    "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}},
    ]
}

_OPENAI_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string"},
        "messages": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {"oneOf": [*_TEXT_OR_PARTS["oneOf"], {"type": "null"}]},
                    "tool_call_id": {"type": "string"},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "tools": {"type": "array", "items": {"type": "object"}},
        "response_format": {"type": "object"},
    },
}

_ANTHROPIC_REQUEST = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["role", "content"],
                      "properties": {"role": {"enum": ["user", "assistant"]}, "content": _TEXT_OR_PARTS}},
        },
        "system": _TEXT_OR_PARTS,
        "stream": {"type": "boolean"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "tools": {"type": "array", "items": {"type": "object", "required": ["name"],
                                             "properties": {"name": {"type": "string"},
                                                            "input_schema": {"type": "object"}}}},
    },
}


def _model_api(summary: str, schema: dict[str, Any], task_names: list[str]) -> dict[str, Any]:
    body = {**schema, "properties": {**schema["properties"], "model": {
        "type": "string", "examples": ["smallfirst/auto", *(f"smallfirst/{t}" for t in task_names)]}}}
    error = {"description": "error, in this API's error format", "headers": _ROUTE_HEADERS,
             "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "post": {
            "summary": summary,
            "parameters": _CALLER_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "the answer (JSON, or server-sent events when stream is true)",
                        "headers": _ROUTE_HEADERS,
                        "content": {"application/json": {"schema": {"type": "object"}},
                                    "text/event-stream": {"schema": {"type": "string"}}}},
                "400": {**error, "description": "malformed JSON, an invalid field, or input no model can use"},
                "413": {**error, "description": "body over the size limit"},
                "502": {**error, "description": "the frontier failed (after the policy's retries)"},
                "503": {**error, "description": "escalated, but no frontier model is configured"},
            },
        }
    }


def _admin(summary: str, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"adminToken": []}],
        "responses": {
            "200": {"description": "the rollout state after the call", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"description": "invalid body"},
            "401": {"description": "missing or wrong bearer token"},
            "404": {"description": "the admin API is off (SMALLFIRST_ADMIN_TOKEN unset)"},
            "422": {"description": "the reloaded policy is invalid; the old one stays"},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": method == "post" and "required" in body,
                             "content": {"application/json": {"schema": body}}}
    return {method: op}


def document(task_names: list[str]) -> dict[str, Any]:
    ok_json = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "smallfirst", "version": __version__,
                 "description": "Answers each agent step with a local small model first; a frontier model when "
                                "policy, a hard stop or validation says so. OpenAI- and Anthropic-compatible."},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/chat/completions": _model_api("OpenAI Chat Completions", _OPENAI_REQUEST, task_names),
            "/v1/messages": _model_api("Anthropic Messages", _ANTHROPIC_REQUEST, task_names),
            "/v1/models": {"get": {"summary": "the task types, as models", "responses": ok_json}},
            "/healthz": {"get": {"summary": "the process is up", "responses": ok_json}},
            "/readyz": {"get": {"summary": "the local models are loaded", "responses": {
                **ok_json, "503": {"description": "still loading, or a model failed to load"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/admin/kill-switch": _admin("turn the kill switch on or off", "post", {
                "type": "object", "required": ["on"], "additionalProperties": False,
                "properties": {"on": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 500}}}),
            "/admin/rollout": _admin("set the rollout mode (default, per task, per group) or the local groups", "post", {
                "type": "object", "additionalProperties": False,
                "properties": {"mode": {"enum": ["live", "shadow", None]}, "task": {"type": "string"},
                               "group": {"type": "string"}, "local_groups": {"type": "array", "items": {"type": "string"}},
                               "reason": {"type": "string", "maxLength": 500}}}),
            "/admin/policy/reload": _admin("reload the policy file (validated first)", "post", {
                "type": "object", "additionalProperties": False,
                "properties": {"keep_overrides": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 500}}}),
            "/admin/state": _admin("the rollout in force and the admin overrides", "get", None),
        },
        "components": {"securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }
