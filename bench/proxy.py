"""What the service costs per request, side by side with a bare passthrough, on 127.0.0.1.

Each server runs in its own process, in front of the same instant fake upstream (an aiohttp app
answering a fixed chat.completion):

    direct       the upstream itself: the latency every other row adds to
    bare         a bare passthrough: starlette + uvicorn + one aiohttp client session
    smallfirst   the smallfirst service (create_app, as `smallfirst serve` runs it) with the audit
                 on, in two rows:
                   local     smallfirst/classify_issue answered by an instant local backend:
                             policy, input guard, hard stops, gate, audit, metrics; no upstream call
                   frontier  smallfirst/propose_code_change (policy: frontier): the same, and the
                             request forwarded to the upstream, like the passthrough
    litellm      LiteLLM's proxy on the same upstream, when `litellm` is installed

The load generator is wrk (`apt-get install wrk`) when present, else a bounded asyncio client
(which on a small machine may itself be the bottleneck; the output says which ran). Each row is
measured at concurrency 1 and 32 for --duration seconds after a short warm-up; CPU ms/request is
the server process's own user+system time over the requests it answered.

    pip install starlette uvicorn          # for the bare passthrough only; not a smallfirst dependency
    python bench/proxy.py [--duration 5]

The last line is machine-readable:
    ratio_c1=<smallfirst local/bare req/s at c=1> ratio_c32=<same at c=32> added_p50_ms=<smallfirst local, c=1>
followed by the same three for the frontier row (frontier_ratio_c1=... and so on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, percentile  # noqa: E402

LOG = "[ERROR] COMPILATION ERROR :\n[ERROR] /src/main/java/App.java:[10,5] cannot find symbol\n[INFO] BUILD FAILURE\n"
UPSTREAM_ANSWER = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench-frontier",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "build"}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
}


# ---------------------------------------------------------------------- the servers (each in its own process)


def run_upstream(port: int) -> None:
    from aiohttp import web

    body = json.dumps(UPSTREAM_ANSWER).encode()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_bare(port: int, upstream: str) -> None:
    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    state: dict[str, aiohttp.ClientSession] = {}

    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        state["session"] = aiohttp.ClientSession()
        yield
        await state["session"].close()

    async def chat(request: Request) -> Response:
        body = await request.body()
        async with state["session"].post(upstream + "/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"}) as r:
            return Response(await r.read(), status_code=r.status, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class InstantBackend:
    name, sha256 = "instant", "0" * 64

    async def complete(self, text, spec):  # type: ignore[no-untyped-def]
        from smallfirst.tasks import LocalOutput

        return LocalOutput(answer="build", model=self.name, label="build", confidence=0.95, confidence_raw=0.95,
                           model_sha256=self.sha256)


def run_smallfirst(port: int, upstream: str, workdir: str) -> None:
    from smallfirst.audit import AuditLog
    from smallfirst.policy import parse_policy
    from smallfirst.server import create_app
    from smallfirst.server.app import run

    policy = parse_policy(f"""
version: 1
models:
  local_classifier: {{provider: embedding}}
  frontier_default: {{provider: openai_compat, name: bench-frontier, base_url: '{upstream}/v1', retries: 0}}
tasks:
  classify_issue:
    description: Classify why a CI build failed, from its log.
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
    min_confidence: 0.72
    escalate_labels: [security, access, unknown]
  propose_code_change: {{description: Propose a code change., local: false}}
""")
    audit = AuditLog.sqlite(Path(workdir) / "bench-audit.db")
    app = create_app(policy, audit=audit, backends={"local_classifier": InstantBackend()}, warm=False, admin_token=None)
    run(app, "127.0.0.1", port)  # as `smallfirst serve` runs it


def litellm_command(port: int, upstream: str, workdir: str) -> list[str] | None:
    exe = shutil.which("litellm")
    if exe is None:
        return None
    config = Path(workdir) / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/bench-frontier\n      api_base: {upstream}/v1\n      api_key: none\n",
        encoding="utf-8",
    )
    return [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


# ---------------------------------------------------------------------- measuring


@dataclass
class Row:
    name: str
    rps: dict[int, float]
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[int, float]
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, body: dict, concurrency: int, duration: float) -> tuple[int, float, float, float, int]:
    """(requests, req/s, p50 ms, p99 ms, non-2xx) from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "-s", script, url],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script)
    lat = {q: float(v) * _UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_ok = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in errors.groups()) if errors else 0)
    return requests, rps, lat["50"], lat["99"], non_ok


def run_asyncio(url: str, body: dict, concurrency: int, duration: float) -> tuple[int, float, float, float, int]:
    """A bounded asyncio client: `concurrency` workers, each sending requests until `duration`."""
    import aiohttp

    data = json.dumps(body).encode()

    async def go() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + duration
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    async with session.post(url, data=data, headers={"content-type": "application/json"}) as r:
                        await r.read()
                        errors += r.status >= 300
                    latencies.append((time.perf_counter() - t) * 1000)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - t0

    latencies, errors, elapsed = asyncio.run(go())
    return len(latencies), len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), errors


def measure(name: str, url: str, body: dict, pid: int, load, duration: float) -> Row:  # type: ignore[no-untyped-def]
    load(url, body, 1, min(1.0, duration))  # warm-up: connections, caches, lazy imports
    rps, cpu = {}, {}
    p50 = p99 = 0.0
    errors = 0
    for c in (1, 32):
        before = cpu_seconds(pid)
        n, r, q50, q99, bad = load(url, body, c, duration)
        cpu[c] = (cpu_seconds(pid) - before) * 1000 / max(n, 1)
        rps[c] = r
        errors += bad
        if c == 1:
            p50, p99 = q50, q99
    return Row(name, rps, p50, p99, cpu, errors)


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "asyncio"), default="auto")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "upstream":
        return run_upstream(args.port)
    if args.role == "bare":
        return run_bare(args.port, args.upstream)
    if args.role == "smallfirst":
        return run_smallfirst(args.port, args.upstream, args.workdir)

    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    load = run_wrk if use_wrk else run_asyncio
    print(describe())
    print(f"load generator: {'wrk' if use_wrk else 'asyncio client'}; {args.duration:g}s per measurement; 127.0.0.1")
    # uvicorn picks httptools and uvloop when installed (uvicorn[standard]), else h11 and asyncio.
    from importlib.util import find_spec

    http_impl = "httptools" if find_spec("httptools") else "h11"
    loop_impl = "uvloop" if find_spec("uvloop") else "asyncio"
    print(f"bare passthrough: uvicorn with {http_impl} + {loop_impl}; smallfirst: aiohttp server (llhttp) + asyncio")

    procs: list[subprocess.Popen[bytes]] = []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as workdir:
        def start(cmd: list[str]) -> tuple[int, subprocess.Popen[bytes]]:
            port = free_port()
            full = [*cmd, "--port", str(port)] if cmd[0] == sys.executable else cmd
            proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(proc)
            wait_for_port(port, proc)
            return port, proc

        me = [sys.executable, __file__]
        try:
            up_port, up = start([*me, "--role", "upstream"])
            upstream = f"http://127.0.0.1:{up_port}"
            plain = {"model": "bench", "messages": [{"role": "user", "content": LOG}]}
            rows.append(measure("direct (upstream)", upstream + "/v1/chat/completions", plain, up.pid, load, args.duration))
            try:
                bare_port, bare = start([*me, "--role", "bare", "--upstream", upstream])
                rows.append(measure("bare passthrough", f"http://127.0.0.1:{bare_port}/v1/chat/completions", plain,
                                    bare.pid, load, args.duration))
            except (RuntimeError, ImportError) as exc:
                print(f"bare passthrough not run ({exc}); pip install starlette uvicorn")
            sf_port, sf = start([*me, "--role", "smallfirst", "--upstream", upstream, "--workdir", workdir])
            sf_url = f"http://127.0.0.1:{sf_port}/v1/chat/completions"
            rows.append(measure("smallfirst local", sf_url, {**plain, "model": "smallfirst/classify_issue"}, sf.pid,
                                load, args.duration))
            rows.append(measure("smallfirst frontier", sf_url, {**plain, "model": "smallfirst/propose_code_change"},
                                sf.pid, load, args.duration))
            lite_port = free_port()
            cmd = litellm_command(lite_port, upstream, workdir)
            if cmd is None:
                print("litellm: not installed, row skipped")
            else:
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(proc)
                wait_for_port(lite_port, proc, timeout=120)
                rows.append(measure("litellm proxy", f"http://127.0.0.1:{lite_port}/v1/chat/completions",
                                    plain, proc.pid, load, args.duration))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()

    report(rows)


def report(rows: list[Row]) -> None:
    by = {r.name: r for r in rows}
    direct = by["direct (upstream)"]
    print()
    print(f"{'':22} {'req/s c=1':>10} {'req/s c=32':>11} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
          f"{'CPU ms/req c=1':>15} {'c=32':>6} {'errors':>7}")
    for r in rows:
        print(f"{r.name:22} {r.rps[1]:>10.0f} {r.rps[32]:>11.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
              f"{r.p50_ms - direct.p50_ms:>8.3f} {r.p99_ms - direct.p99_ms:>8.3f} {r.cpu_ms[1]:>15.3f} {r.cpu_ms[32]:>6.3f} "
              f"{r.errors:>7}")
    bare = by.get("bare passthrough")
    if bare is None:
        return
    print()
    out = []
    for label, key in (("", "smallfirst local"), ("frontier_", "smallfirst frontier")):
        sf = by[key]
        r1, r32 = sf.rps[1] / bare.rps[1], sf.rps[32] / bare.rps[32]
        print(f"{key}: {r1:.2f}x bare req/s at c=1, {r32:.2f}x at c=32; +{sf.p50_ms - direct.p50_ms:.3f} ms p50 "
              f"over direct (bare +{bare.p50_ms - direct.p50_ms:.3f} ms); CPU/request {sf.cpu_ms[32] / bare.cpu_ms[32]:.2f}x bare")
        out.append(f"{label}ratio_c1={r1:.3f} {label}ratio_c32={r32:.3f} {label}added_p50_ms={sf.p50_ms - direct.p50_ms:.3f}")
    if "litellm proxy" in by:
        lite = by["litellm proxy"]
        print(f"litellm proxy: {lite.rps[1] / bare.rps[1]:.2f}x bare req/s at c=1; +{lite.p50_ms - direct.p50_ms:.3f} ms p50")
    print(" ".join(out))


if __name__ == "__main__":
    main()
