"""An OpenTelemetry collector's OTLP/HTTP trace receiver, for tests: POST /v1/traces with a
protobuf ExportTraceServiceRequest, answered as a collector answers. The spans it decodes are in
`spans`, one plain dict each."""

from __future__ import annotations

import gzip
import threading
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from fakes import FakeServer

PROTOBUF = "application/x-protobuf"


class FakeCollector(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []
        self.exports = 0
        self.arrived = threading.Event()

    @property
    def base_url(self) -> str:
        return self.origin  # what OTEL_EXPORTER_OTLP_ENDPOINT names: the collector, not /v1/traces

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self.traces)

    async def traces(self, request: web.Request) -> web.Response:
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text=f"expected {PROTOBUF}, got {request.content_type}")
        body = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append({
                        "name": s.name,
                        "kind": s.kind,  # protobuf enum: 1 internal, 2 server, 3 client
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "start_ns": s.start_time_unix_nano,
                        "end_ns": s.end_time_unix_nano,
                        "status_code": s.status.code,  # 0 unset, 1 ok, 2 error
                        "status_message": s.status.message,
                        "attributes": _attributes(s.attributes),
                        "resource": resource,
                        "scope": ss.scope.name,
                    })
        self.exports += 1
        self.arrived.set()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)


def _attributes(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out
