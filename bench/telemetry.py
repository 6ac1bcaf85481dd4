"""What OpenTelemetry costs per decision: off, on with spans made but dropped, on with OTLP/HTTP.

Decisions run through Router.aroute in the service's own set-up (create_app: metrics, the SQLite
audit writer) with an instant local backend and a frontier call that answers at once, 16 at a
time. Reported is this process's CPU time per decision, all threads together (the audit writer's,
the span exporter's), so the cost of export counts too. The OTLP receiver runs in a process of
its own and answers every export with 200, as a collector does.

    pip install 'smallfirst[otel]'
    python bench/telemetry.py [--n 6000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe  # noqa: E402

from smallfirst.audit import AuditLog  # noqa: E402
from smallfirst.policy import parse_policy  # noqa: E402
from smallfirst.server.app import SERVICE, create_app  # noqa: E402
from smallfirst.tasks import FrontierAnswer, LocalOutput, Task  # noqa: E402
from smallfirst.telemetry import Telemetry, TelemetrySettings  # noqa: E402

POLICY = """
version: 1
models:
  local_classifier: {provider: embedding}
  frontier_default: {provider: openai_compat, name: bench-frontier, base_url: 'http://127.0.0.1:9/v1', retries: 0}
tasks:
  classify_issue:
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
  propose_code_change: {local: false}
"""
LOG = "[ERROR] COMPILATION ERROR :\n[ERROR] /src/main/java/App.java:[10,5] cannot find symbol\n[INFO] BUILD FAILURE\n"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

RECEIVER = """
import sys
from aiohttp import web
async def traces(request):
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")
app = web.Application(); app.router.add_post("/v1/traces", traces)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


class InstantBackend:
    name, sha256 = "instant", "0" * 64

    async def complete(self, text, spec):  # type: ignore[no-untyped-def]
        return LocalOutput(answer="build", model=self.name, label="build", confidence=0.95, confidence_raw=0.95,
                           model_sha256=self.sha256)


async def instant_frontier(esc, backend, spec, stream):  # type: ignore[no-untyped-def]
    return FrontierAnswer("build", "bench-frontier", 40, 1, response_id="chatcmpl-bench")


def dropping() -> Telemetry:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return Telemetry(provider, owned=True)


def cpu_per_decision(telemetry: Telemetry | None, task_type: str, n: int) -> float:
    audit = AuditLog.sqlite(Path(tempfile.mkdtemp()) / "a.db")
    app = create_app(parse_policy(POLICY), audit=audit, backends={"local_classifier": InstantBackend()}, warm=False,
                     admin_token=None, telemetry=telemetry)
    router = app[SERVICE].router
    metadata = {"tools": False, "protocol": "openai", "trace_context": {"traceparent": TRACEPARENT}}
    task = Task(input=LOG, task_type=task_type, metadata=metadata)

    async def run(k: int) -> None:
        async def one() -> None:
            for _ in range(k // 16):
                await router.aroute(task, frontier_call=instant_frontier)
                await asyncio.sleep(0)

        await asyncio.gather(*(one() for _ in range(16)))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run(480))
    audit.flush()
    t = time.process_time()
    loop.run_until_complete(run(n))
    audit.flush()
    if telemetry is not None:
        telemetry.shutdown()  # exports what is queued: part of the cost
    cpu = (time.process_time() - t) * 1e6 / n
    loop.close()
    audit.close()
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000, help="decisions per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.setswitchinterval(0.001)  # as `smallfirst serve` runs
    # A queue that holds every span of a burst: a dropped span would cost less than a sent one.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(4 * args.n)
    print(describe())
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(1.5)
        endpoint = TelemetrySettings(f"http://127.0.0.1:{port}/v1/traces", "http/protobuf", "bench")
        variants = {"off": lambda: None, "on, spans dropped": dropping, "on, OTLP/HTTP": lambda: Telemetry.otlp(endpoint)}
        print(f"CPU us per decision, median of {args.rounds} rounds of {args.n} (16 at a time)")
        for task_type in ("propose_code_change", "classify_issue"):
            runs: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.rounds):
                for name, make in variants.items():
                    runs[name].append(cpu_per_decision(make(), task_type, args.n))
            off = statistics.median(runs["off"])
            cells = "   ".join(f"{name} {statistics.median(v):.1f}" + ("" if name == "off" else
                               f" (+{statistics.median(v) - off:.1f})") for name, v in runs.items())
            print(f"{task_type:20} {cells}")
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
