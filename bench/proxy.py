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
                             agent's request forwarded to the upstream, like the passthrough
    litellm      LiteLLM's proxy on the same upstream, when it is installed (below)

The load generator is wrk (`apt-get install wrk`) when present, else a bounded asyncio client
(which on a small machine may itself be the bottleneck; the output says which ran). Each row is
measured at concurrency 1 and 32 for --duration seconds after a short warm-up, --rounds times
taking turns with the other rows, and the medians are reported: on a shared machine a neighbour's
burst then hits every row alike. CPU ms/request is the server process's own user+system time (all
its threads: the audit writer's too) over the requests it answered.

    pip install starlette 'uvicorn[standard]'   # the bare passthrough (httptools + uvloop); not smallfirst's
    python bench/proxy.py [--duration 3] [--rounds 3] [--baseline-src DIR] [--no-litellm]

--baseline-src adds the two smallfirst rows once more, served from another checkout's src/ (say
`git archive main src | tar -x -C /tmp/main`): a change's before and after, in one run.

LiteLLM goes in a virtual environment of its own, never the project's (its dependencies pin
versions smallfirst does not want); the bench finds it there, or on PATH, or at --litellm:

    python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.108.7'

It is given what its proxy needs to start: a config naming the fake upstream as an OpenAI-compatible
model, a master key (sent by the load generator, as a client would), no database, and its
telemetry, callbacks and request logging off.

The last line is machine-readable:
    ratio_c1=<smallfirst local/bare req/s at c=1> ratio_c32=<same at c=32> added_p50_ms=<smallfirst local, c=1>
    cpu_ratio=<smallfirst local/bare CPU per request at c=32>
followed by the same four for the frontier row (frontier_ratio_c1=... and so on), and for LiteLLM
(litellm_ratio_c1=...) when it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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

    @contextlib.asynccontextmanager
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
    from smallfirst.server.app import create_app
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
    Path(workdir).mkdir(exist_ok=True)
    audit = AuditLog.sqlite(Path(workdir) / "bench-audit.db")
    app = create_app(policy, audit=audit, backends={"local_classifier": InstantBackend()}, warm=False, admin_token=None)
    run(app, "127.0.0.1", port)  # as `smallfirst serve` runs it


LITELLM_KEY = "sk-bench-master-key"  # LiteLLM's master key: its proxy answers no request without one
LITELLM_VENV = Path("/tmp/litellm-venv/bin/litellm")


def litellm_command(port: int, upstream: str, workdir: str, exe: str | None) -> list[str] | None:
    exe = exe or (str(LITELLM_VENV) if LITELLM_VENV.exists() else shutil.which("litellm"))
    if exe is None:
        return None
    config = Path(workdir) / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/bench-frontier\n      api_base: {upstream}/v1\n      api_key: none\n"
        # Without a database its proxy keeps no spend logs; say so rather than have it try.
        f"general_settings:\n  master_key: {LITELLM_KEY}\n  disable_spend_logs: true\n"
        "litellm_settings:\n  set_verbose: false\n  drop_params: true\n",
        encoding="utf-8",
    )
    return [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    env.update(LITELLM_LOG="ERROR", LITELLM_MODE="PRODUCTION", NO_DOCS="True")
    return env


# ---------------------------------------------------------------------- measuring

CONCURRENCY = (1, 32)


@dataclass
class Target:
    """One server row: where to send what, and which process to charge the CPU to."""

    name: str
    url: str
    body: dict
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    runs: dict[int, list[tuple[float, float, float, float]]] = field(default_factory=dict)  # c -> (req/s, p50, p99, cpu)
    errors: int = 0


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


def run_wrk(url: str, body: dict, concurrency: int, duration: float,
            headers: dict[str, str]) -> tuple[int, float, float, float, int]:
    """(requests, req/s, p50 ms, p99 ms, non-2xx) from one wrk run."""
    lines = [f'wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n")
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


def run_asyncio(url: str, body: dict, concurrency: int, duration: float,
                headers: dict[str, str]) -> tuple[int, float, float, float, int]:
    """A bounded asyncio client: `concurrency` workers, each sending requests until `duration`."""
    import aiohttp

    data = json.dumps(body).encode()
    hdrs = {"content-type": "application/json", **headers}

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
                    async with session.post(url, data=data, headers=hdrs) as r:
                        await r.read()
                        errors += r.status >= 300
                    latencies.append((time.perf_counter() - t) * 1000)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - t0

    latencies, errors, elapsed = asyncio.run(go())
    return len(latencies), len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), errors


def measure_round(t: Target, load, duration: float) -> None:  # type: ignore[no-untyped-def]
    for c in CONCURRENCY:
        before = cpu_seconds(t.pid)
        n, rps, p50, p99, bad = load(t.url, t.body, c, duration, t.headers)
        cpu = (cpu_seconds(t.pid) - before) * 1000 / max(n, 1)
        t.runs.setdefault(c, []).append((rps, p50, p99, cpu))
        t.errors += bad


def summarise(t: Target) -> Row:
    def med(c: int, i: int) -> float:
        return statistics.median(run[i] for run in t.runs[c])

    return Row(t.name, {c: med(c, 0) for c in CONCURRENCY}, med(1, 1), med(1, 2), {c: med(c, 3) for c in CONCURRENCY},
               t.errors)


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per row and concurrency; medians reported")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "asyncio"), default="auto")
    ap.add_argument("--litellm", help="the litellm executable (default: /tmp/litellm-venv/bin/litellm, else PATH)")
    ap.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM row even when it is installed")
    ap.add_argument("--baseline-src", metavar="DIR",
                    help="also run the smallfirst rows from another checkout's src/ (before/after in one run)")
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
    print(f"load generator: {'wrk' if use_wrk else 'asyncio client'}; {args.duration:g}s per measurement, "
          f"{args.rounds} rounds taking turns, medians; 127.0.0.1; load average {os.getloadavg()[0]:.1f} at start")
    # uvicorn picks httptools and uvloop when installed (uvicorn[standard]), else h11 and asyncio.
    from importlib.util import find_spec

    http_impl = "httptools" if find_spec("httptools") else "h11"
    loop_impl = "uvloop" if find_spec("uvloop") else "asyncio"
    print(f"bare passthrough: uvicorn with {http_impl} + {loop_impl}; smallfirst: aiohttp server (llhttp) + asyncio")

    procs: list[subprocess.Popen[bytes]] = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory() as workdir:
        def start(cmd: list[str], port: int | None = None, env: dict[str, str] | None = None,
                  timeout: float = 60.0) -> tuple[int, subprocess.Popen[bytes]]:
            port = port or free_port()
            full = [*cmd, "--port", str(port)] if cmd[0] == sys.executable else cmd
            proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            procs.append(proc)
            wait_for_port(port, proc, timeout)
            return port, proc

        me = [sys.executable, __file__]
        try:
            up_port, up = start([*me, "--role", "upstream"])
            upstream = f"http://127.0.0.1:{up_port}"
            plain = {"model": "bench", "messages": [{"role": "user", "content": LOG}]}
            targets.append(Target("direct (upstream)", upstream + "/v1/chat/completions", plain, up.pid))
            try:
                bare_port, bare = start([*me, "--role", "bare", "--upstream", upstream])
                targets.append(Target("bare passthrough", f"http://127.0.0.1:{bare_port}/v1/chat/completions", plain,
                                      bare.pid))
            except (RuntimeError, ImportError) as exc:
                print(f"bare passthrough not run ({exc}); pip install starlette 'uvicorn[standard]'")
            sf_port, sf = start([*me, "--role", "smallfirst", "--upstream", upstream, "--workdir", workdir])
            sf_url = f"http://127.0.0.1:{sf_port}/v1/chat/completions"
            targets.append(Target("smallfirst local", sf_url, {**plain, "model": "smallfirst/classify_issue"}, sf.pid))
            targets.append(Target("smallfirst frontier", sf_url, {**plain, "model": "smallfirst/propose_code_change"},
                                  sf.pid))
            if args.baseline_src:
                env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
                b_port, b = start([*me, "--role", "smallfirst", "--upstream", upstream, "--workdir", workdir + "/baseline"],
                                  env=env)
                b_url = f"http://127.0.0.1:{b_port}/v1/chat/completions"
                targets.append(Target("baseline local", b_url, {**plain, "model": "smallfirst/classify_issue"}, b.pid))
                targets.append(Target("baseline frontier", b_url, {**plain, "model": "smallfirst/propose_code_change"},
                                      b.pid))
            lite_port = free_port()
            cmd = None if args.no_litellm else litellm_command(lite_port, upstream, workdir, args.litellm)
            if args.no_litellm:
                print("litellm: row skipped (--no-litellm)")
            elif cmd is None:
                print("litellm: not installed, row skipped (see the docstring for the command)")
            else:
                _, proc = start(cmd, lite_port, env=litellm_env(), timeout=180)
                version = subprocess.run([str(Path(cmd[0]).with_name("python")), "-c",
                                          "import importlib.metadata as m; print(m.version('litellm'))"],
                                         capture_output=True, text=True).stdout.strip() or "?"
                print(f"litellm proxy: LiteLLM {version} ({cmd[0]})")
                targets.append(Target("litellm proxy", f"http://127.0.0.1:{lite_port}/v1/chat/completions", plain,
                                      proc.pid, {"Authorization": f"Bearer {LITELLM_KEY}"}))
            for t in targets:  # warm-up: connections, caches, lazy imports
                load(t.url, t.body, 1, 1.0, t.headers)
            for _ in range(args.rounds):
                for t in targets:
                    measure_round(t, load, args.duration)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()

    report([summarise(t) for t in targets])


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
    keys = (("", "smallfirst local"), ("frontier_", "smallfirst frontier"), ("baseline_", "baseline local"),
            ("baseline_frontier_", "baseline frontier"), ("litellm_", "litellm proxy"))
    for label, key in keys:
        if key not in by:
            continue
        r = by[key]
        r1, r32, cpu = r.rps[1] / bare.rps[1], r.rps[32] / bare.rps[32], r.cpu_ms[32] / bare.cpu_ms[32]
        print(f"{key}: {r1:.2f}x bare req/s at c=1, {r32:.2f}x at c=32; +{r.p50_ms - direct.p50_ms:.3f} ms p50 "
              f"over direct (bare +{bare.p50_ms - direct.p50_ms:.3f} ms); CPU/request {r.cpu_ms[32]:.3f} ms at c=32, "
              f"{cpu:.2f}x bare")
        out.append(f"{label}ratio_c1={r1:.3f} {label}ratio_c32={r32:.3f} "
                   f"{label}added_p50_ms={r.p50_ms - direct.p50_ms:.3f} {label}cpu_ratio={cpu:.3f}")
    print(" ".join(out))


if __name__ == "__main__":
    main()
