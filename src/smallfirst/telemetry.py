"""OpenTelemetry: one span per decision, exported over OTLP when an endpoint is configured.

Off by default. It is on when the policy sets `telemetry.otlp_endpoint`, or else when the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set; OTEL_SDK_DISABLED=true
turns it off either way. Off, nothing imports opentelemetry and the router does no work for it.
On, it needs the optional SDK: `pip install 'smallfirst[otel]'` (grpc also needs
opentelemetry-exporter-otlp-proto-grpc). The exporter reads the rest of the standard variables
itself (OTEL_EXPORTER_OTLP_HEADERS for a collector's key, timeouts, certificates).

The span is a GenAI inference span (semantic conventions for generative AI, "chat {model}"):
gen_ai.* and server.* for the model that answered, error.type when the decision failed, and
smallfirst.* for the routing decision itself. It is made when the decision is recorded, with the
moment routing began as its start, so a streamed answer is covered to its last byte. A caller's
W3C traceparent makes it a child span in the caller's trace. Spans leave through the SDK's
BatchSpanProcessor: a background thread, never the request.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from smallfirst.policy import ModelSpec, Policy
    from smallfirst.router import RouteResult

__all__ = ["Telemetry", "TelemetryError", "TelemetrySettings", "settings_for", "TRACE_HEADERS"]

# Request headers of W3C Trace Context; the service hands them to the router in Task.metadata.
TRACE_HEADERS = ("traceparent", "tracestate")
DEFAULT_SERVICE_NAME = "smallfirst"
# gen_ai.provider.name by policy provider. OpenAI-compatible servers are "openai", as the
# conventions ask of any client speaking OpenAI's API; models run in this process are smallfirst's.
_PROVIDERS = {"openai_compat": "openai", "anthropic": "anthropic", "llamacpp": "smallfirst", "embedding": "smallfirst"}
_REMOTE = frozenset({"openai_compat", "anthropic"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Outcomes that are failures of the decision; client_closed is the caller's choice, not one.
_ERRORS = {"frontier_error": None, "no_frontier": "no_frontier", "rejected": "input_rejected"}


class TelemetryError(RuntimeError):
    """Telemetry is configured but cannot start (the optional SDK is missing)."""


@dataclass(frozen=True)
class TelemetrySettings:
    endpoint: str | None  # None: the exporter reads the OTEL_EXPORTER_OTLP_* variables itself
    protocol: str  # http/protobuf | grpc
    service_name: str


def settings_for(policy: "Policy", environ: Mapping[str, str] = os.environ) -> TelemetrySettings | None:
    """What to export, or None when telemetry is off. The policy's settings win over the
    environment's, one setting at a time."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    spec = policy.telemetry
    from_env = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not spec.otlp_endpoint and not from_env:
        return None
    protocol = (spec.protocol or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol not in ("http/protobuf", "grpc"):
        raise TelemetryError(f"OTLP protocol {protocol!r} is not supported; use http/protobuf or grpc")
    endpoint = spec.otlp_endpoint
    if endpoint and protocol == "http/protobuf" and not endpoint.rstrip("/").endswith("/v1/traces"):
        # Like OTEL_EXPORTER_OTLP_ENDPOINT, the policy names the collector; traces go to its path.
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    name = spec.service_name or environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    return TelemetrySettings(endpoint, protocol, name)


class Telemetry:
    """Records decisions as spans on a tracer provider: its own OTLP one (`from_policy`), or one
    the application already runs (`Telemetry(provider)`), e.g. with an in-memory exporter."""

    def __init__(self, tracer_provider: Any, *, owned: bool = False):
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from smallfirst import __version__

        self.tracer = tracer_provider.get_tracer("smallfirst", __version__)
        self._provider = tracer_provider if owned else None
        self._propagator = TraceContextTextMapPropagator()
        self._client, self._internal = SpanKind.CLIENT, SpanKind.INTERNAL
        self._error = lambda description: Status(StatusCode.ERROR, description)

    @classmethod
    def from_policy(cls, policy: "Policy") -> "Telemetry | None":
        found = settings_for(policy)
        return None if found is None else cls.otlp(found)

    @classmethod
    def otlp(cls, settings: TelemetrySettings) -> "Telemetry":
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            if settings.protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
        except ImportError as exc:
            extra = "opentelemetry-exporter-otlp-proto-grpc" if settings.protocol == "grpc" else "'smallfirst[otel]'"
            raise TelemetryError(f"telemetry is configured but {exc.name or 'opentelemetry'} is not installed: "
                                 f"pip install {extra}") from None
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        exporter = OTLPSpanExporter(endpoint=settings.endpoint) if settings.endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, owned=True)

    def record(
        self,
        result: "RouteResult",
        *,
        start_ns: int,
        asked: "ModelSpec | None",
        server_url: str | None,
        error_type: str | None,
        stream: bool,
        user_group: str,
        trace_context: Mapping[str, str] | None,
        error: str | None = None,
    ) -> None:
        """One finished decision as a span from `start_ns` to now. `asked` is the model the
        answer was asked of (the local model, or the frontier when the task left the local path);
        `error` a masked description of a failure."""
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        # (gen_ai.provider.name replaced gen_ai.system in the conventions' version 1.37.)
        attrs["gen_ai.provider.name"] = _PROVIDERS.get(asked.provider, asked.provider) if asked is not None else "smallfirst"
        request_model = asked.display_name if asked is not None else None
        if request_model:
            attrs["gen_ai.request.model"] = request_model
        attrs["gen_ai.request.stream"] = stream
        if result.model:
            attrs["gen_ai.response.model"] = result.model
        if result.route == "frontier" and result.frontier is not None:
            tokens_in, tokens_out = result.frontier.tokens_in, result.frontier.tokens_out
            response_id = result.frontier.response_id
        elif result.route == "local" and result.local is not None:
            tokens_in, tokens_out, response_id = result.local.tokens_in, result.local.tokens_out, None
        else:
            tokens_in = tokens_out = 0
            response_id = None
        if tokens_in or tokens_out:
            attrs["gen_ai.usage.input_tokens"] = tokens_in
            attrs["gen_ai.usage.output_tokens"] = tokens_out
        if response_id:
            attrs["gen_ai.response.id"] = response_id
        remote = asked is not None and asked.provider in _REMOTE and server_url
        if remote:
            address = _server(server_url)  # type: ignore[arg-type]
            if address is not None:
                attrs["server.address"], attrs["server.port"] = address
        status = None
        if result.outcome in _ERRORS:
            attrs["error.type"] = error_type or _ERRORS[result.outcome] or "_OTHER"
            status = self._error(error or result.outcome)
        attrs.update({
            "smallfirst.decision_id": result.decision_id,
            "smallfirst.task": result.task_type or "none",
            "smallfirst.route": result.route,
            "smallfirst.reason": result.reason.value if result.reason else "none",
            "smallfirst.mode": result.mode,
            "smallfirst.outcome": result.outcome,
            "smallfirst.user_group": user_group,
        })
        if result.route_candidate:
            attrs["smallfirst.route_candidate"] = result.route_candidate
        if result.confidence is not None:
            attrs["smallfirst.confidence"] = float(result.confidence)
        if result.hard_stop is not None:
            attrs["smallfirst.hard_stop"] = result.hard_stop.category
        parent = self._propagator.extract(trace_context) if trace_context else None
        span = self.tracer.start_span(
            f"chat {request_model}" if request_model else "chat",
            context=parent,
            kind=self._client if remote else self._internal,
            attributes=attrs,
            start_time=start_ns,
        )
        if status is not None:
            span.set_status(status)
        span.end(end_time=time.time_ns())

    def shutdown(self) -> None:
        """Export what is queued and stop (only a provider this object made itself)."""
        if self._provider is not None:
            self._provider.shutdown()


@functools.lru_cache(maxsize=64)
def _server(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
