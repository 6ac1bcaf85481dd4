"""Two `smallfirst serve` replicas sharing one PostgreSQL behind a load balancer, on 127.0.0.1.

The topology of deploy/compose.yaml, run with plain commands (README: Running several replicas):

    PostgreSQL          a throwaway server (tests/pgserver.py: initdb in a temp dir, own port),
                        or --store URL; `smallfirst migrate --audit URL` first
    replica r1, r2      `smallfirst serve --policy P --audit URL --spill ...` (real processes, the
                        bundled classifier; the frontier is an instant fake OpenAI-style upstream)
    load balancer       haproxy, round robin (`apt-get install haproxy`); without it the client
                        alternates between the replicas itself

Run 1, kill switch: load through the balancer; the kill switch is thrown (and cleared) on one
replica, alternating which; probes hitting each replica directly time how long until both
answer manual_override (target <= 1 s). Then every decision id answered must be in the store,
once: audit rows == requests.
Run 2, restart: the same load while PostgreSQL is stopped (`pg_ctl stop -m fast`) for longer
than the writers' spill delay (5 s) and started again; the answers must keep coming, and the
store must end with every answered decision exactly once (0 lost, 0 duplicated).

    python bench/replicas.py [--flips 6] [--restart-load 24] [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from machine import describe, percentile  # noqa: E402
from proxy import free_port, run_upstream, wait_for_port  # noqa: E402

TOKEN = "bench-admin-token-0123456789"
LOG = "[ERROR] COMPILATION ERROR :\n[ERROR] /src/main/java/App.java:[10,5] cannot find symbol\n[INFO] BUILD FAILURE\n"
BODY = {"model": "smallfirst/classify_issue", "messages": [{"role": "user", "content": LOG}]}
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Smallfirst-Actor": "bench"}
CONCURRENCY = 6


# ---------------------------------------------------------------------- the topology


def policy_file(workdir: Path, upstream: str) -> Path:
    """The bundled policy's classify_issue (MiniLM and its trained head), the frontier pointed at
    the fake upstream; the Gemma tasks are left out so a replica loads one model."""
    import smallfirst

    bundled = Path(smallfirst.__file__).parent / "data" / "policy.yaml"
    p = yaml.safe_load(bundled.read_text(encoding="utf-8"))
    task = p["tasks"]["classify_issue"]
    task["head"] = str(bundled.parent / task["head"])
    p["models"] = {"local_classifier": p["models"]["local_classifier"],
                   "frontier_default": {"provider": "openai_compat", "name": "bench-frontier",
                                        "base_url": f"{upstream}/v1", "retries": 0}}
    p["prices"] = {"bench-frontier": {"input": 3.0, "output": 15.0}, "local": p["prices"]["local"]}
    p["tasks"] = {"classify_issue": task, "propose_code_change": p["tasks"]["propose_code_change"]}
    out = workdir / "policy.yaml"
    out.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    return out


def haproxy_config(workdir: Path, port: int, replicas: list[int]) -> Path:
    servers = "\n".join(f"    server r{i + 1} 127.0.0.1:{p} check inter 500ms" for i, p in enumerate(replicas))
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend smallfirst
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
{servers}
""", encoding="utf-8")
    return cfg


@dataclass
class Topology:
    store: str
    replicas: list[str]
    lb: str | None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pg: object | None = None

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def start(workdir: Path, store: str | None) -> Topology:
    from pgserver import PgServer

    pg = None
    if store is None:
        pg = PgServer.start_new()
        store = pg.create_database("smallfirst")
    smallfirst = [sys.executable, "-m", "smallfirst.cli"]
    subprocess.run([*smallfirst, "migrate", "--audit", store], check=True)
    topo = Topology(store, [], None, pg=pg)
    up_port = free_port()
    up = subprocess.Popen([sys.executable, __file__, "--role", "upstream", "--port", str(up_port)])
    topo.procs.append(up)
    wait_for_port(up_port, up)
    policy = policy_file(workdir, f"http://127.0.0.1:{up_port}")
    ports = []
    for name in ("r1", "r2"):
        port = free_port()
        env = {**os.environ, "SMALLFIRST_ADMIN_TOKEN": TOKEN, "SMALLFIRST_REPLICA": name}
        proc = subprocess.Popen([*smallfirst, "serve", "--policy", str(policy), "--audit", store, "--port", str(port),
                                 "--spill", str(workdir / f"{name}.spill.jsonl")], env=env,
                                stdout=open(workdir / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
        topo.procs.append(proc)
        wait_for_port(port, proc)
        ports.append(port)
    topo.replicas = [f"http://127.0.0.1:{p}" for p in ports]
    if shutil.which("haproxy"):
        lb_port = free_port()
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(haproxy_config(workdir, lb_port, ports))],
                                stdout=subprocess.DEVNULL, stderr=open(workdir / "haproxy.log", "wb"))
        topo.procs.append(proc)
        wait_for_port(lb_port, proc)
        topo.lb = f"http://127.0.0.1:{lb_port}"
    return topo


async def ready(session, urls: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                async with session.get(url + "/readyz") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- load and probes


@dataclass
class Tally:
    ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def add(self, status: int, decision_id: str | None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if decision_id:
            self.ids.append(decision_id)


async def one(session, base: str, tally: Tally) -> str | None:
    """One request; the reason header it was answered with."""
    try:
        async with session.post(base + "/v1/chat/completions", json=BODY) as r:
            await r.read()
            tally.add(r.status, r.headers.get("x-smallfirst-decision-id"))
            return r.headers.get("x-smallfirst-reason")
    except OSError:
        tally.errors += 1
        return None


async def load(session, topo: Topology, tally: Tally, stop: asyncio.Event) -> None:
    async def worker(k: int) -> None:
        i = k
        while not stop.is_set():
            base = topo.lb or topo.replicas[i % 2]  # without a balancer, alternate by hand
            await one(session, base, tally)
            i += 1
    await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))


async def flip(session, topo: Topology, tally: Tally, on: bool, where: int) -> tuple[list[float], list[float]]:
    """Throw (or clear) the kill switch on replica `where`. Per replica, seconds from just before
    the admin call until (1) its smallfirst_kill_switch gauge says so: the change is in force for
    the next request; (2) the first answer routed accordingly is received: (1) plus one request's
    latency under the load."""
    t0 = time.perf_counter()
    async with session.post(topo.replicas[where] + "/admin/kill-switch", headers=AUTH,
                            json={"on": on, "reason": "bench flip"}) as r:
        assert r.status == 200, await r.text()
    gauge = f"smallfirst_kill_switch {1.0 if on else 0.0}"

    async def in_force(base: str) -> float:
        while time.perf_counter() - t0 < 30:
            async with session.get(base + "/metrics") as r:
                if gauge in await r.text():
                    return time.perf_counter() - t0
            await asyncio.sleep(0.005)
        return float("inf")

    async def answered(base: str) -> float:
        while time.perf_counter() - t0 < 30:
            if (await one(session, base, tally) == "manual_override") == on:
                return time.perf_counter() - t0
        return float("inf")

    forced = asyncio.gather(*(in_force(b) for b in topo.replicas))
    routed = asyncio.gather(*(answered(b) for b in topo.replicas))
    return list(await forced), list(await routed)


# ---------------------------------------------------------------------- the store's side


def stored(store: str) -> tuple[int, set[str]]:
    import psycopg

    with psycopg.connect(store, connect_timeout=3) as conn:
        ids = [r[0] for r in conn.execute("SELECT decision_id FROM decisions")]
    return len(ids), set(ids)


async def settle(store: str, want: int, timeout: float) -> float:
    """Wait until the store holds `want` rows (written, or replayed from the spill files)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if (await asyncio.to_thread(stored, store))[0] >= want:
                break
        except Exception:  # noqa: BLE001 - the store may still be starting
            pass
        await asyncio.sleep(0.25)
    return time.monotonic() - t0


async def audit_counters(session, topo: Topology) -> dict[str, int]:
    out: dict[str, int] = {}
    for base in topo.replicas:
        async with session.get(base + "/metrics") as r:
            text = await r.text()
        for state, n in re.findall(r'smallfirst_audit_records_total\{state="(\w+)"\} ([\d.e+]+)', text):
            out[state] = out.get(state, 0) + int(float(n))
    return out


def account(tally: Tally, rows: int, ids_in_store: set[str]) -> dict[str, int]:
    answered = set(tally.ids)
    return {"requests": sum(tally.statuses.values()) + tally.errors, "answered": len(tally.ids),
            "rows": rows, "lost": len(answered - ids_in_store), "duplicated": rows - len(ids_in_store),
            "unexplained": len(ids_in_store - answered)}


# ---------------------------------------------------------------------- the two runs


async def run_kill_switch(topo: Topology, flips: int) -> dict[str, object]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        await ready(session, topo.replicas)
        tally, stop = Tally(), asyncio.Event()
        background = asyncio.create_task(load(session, topo, tally, stop))
        await asyncio.sleep(1.0)
        forced_other, routed_here, routed_other = [], [], []
        for i in range(flips):
            where = i % 2
            forced, routed = await flip(session, topo, tally, on=(i % 2 == 0), where=where)
            forced_other.append(forced[1 - where])
            routed_here.append(routed[where])
            routed_other.append(routed[1 - where])
            await asyncio.sleep(0.7)
        stop.set()
        await background
        counters = await audit_counters(session, topo)
    waited = await settle(topo.store, len(tally.ids), 30)
    rows, ids = stored(topo.store)
    return {"forced_other": forced_other, "routed_here": routed_here, "routed_other": routed_other,
            "account": account(tally, rows, ids), "statuses": tally.statuses, "settle_s": waited, "counters": counters}


async def run_restart(topo: Topology, duration: float, outage: float) -> dict[str, object]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        before = await audit_counters(session, topo)
        start_rows = stored(topo.store)[1]
        tally, stop = Tally(), asyncio.Event()
        background = asyncio.create_task(load(session, topo, tally, stop))
        await asyncio.sleep((duration - outage) / 2)
        at_stop = len(tally.ids)
        await asyncio.to_thread(topo.pg.stop, "fast")  # type: ignore[attr-defined]
        await asyncio.sleep(outage)
        during = len(tally.ids) - at_stop
        await asyncio.to_thread(topo.pg.start)  # type: ignore[attr-defined]
        await asyncio.sleep((duration - outage) / 2)
        stop.set()
        await background
        waited = await settle(topo.store, len(start_rows) + len(tally.ids), 60)
        after = await audit_counters(session, topo)
        rows, ids = stored(topo.store)
        # The shared flags recover too: LISTEN reconnects, the pool replaces its broken connections.
        flips = [(await flip(session, topo, Tally(), on=on, where=0))[0] for on in (True, False)]
    acc = account(tally, rows - len(start_rows), ids - start_rows)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {"account": acc, "statuses": tally.statuses, "answered_during_outage": during, "settle_s": waited,
            "counters": delta, "flips_after": [t[1] for t in flips]}


class _Keep:
    def __init__(self, path: str):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = path

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["bench", "upstream"], default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help="an existing, migrated-or-empty PostgreSQL URL (default: a throwaway server)")
    ap.add_argument("--flips", type=int, default=6, help="kill switch changes in run 1 (alternating replicas)")
    ap.add_argument("--restart-load", type=float, default=24.0, help="seconds of load in run 2")
    ap.add_argument("--outage", type=float, default=8.0, help="seconds PostgreSQL is down in run 2")
    args = ap.parse_args()
    if args.role == "upstream":
        run_upstream(args.port)
        return
    print(describe())
    keep = os.environ.get("SMALLFIRST_BENCH_KEEP")  # a folder to keep the replicas' logs in
    with (tempfile.TemporaryDirectory(prefix="smallfirst-replicas-") if not keep else _Keep(keep)) as tmp:
        topo = start(Path(tmp), args.store)
        try:
            print(f"store PostgreSQL ({'throwaway' if topo.pg else 'given'}); replicas {', '.join(topo.replicas)}; "
                  f"balancer {'haproxy ' + topo.lb if topo.lb else 'none (haproxy not installed): the client alternates'}; "
                  f"load: {CONCURRENCY} concurrent clients, classify_issue on the bundled classifier")
            r1 = asyncio.run(run_kill_switch(topo, args.flips))
            fmt = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)  # noqa: E731
            print(f"\nrun 1: kill switch thrown and cleared {args.flips} times on one replica, alternating; ms from the admin call")
            print(f"  in force on the other replica (its gauge): {fmt(r1['forced_other'])}")
            print(f"  first answer routed accordingly, the replica that took the call: {fmt(r1['routed_here'])}")
            print(f"  first answer routed accordingly, the other replica:              {fmt(r1['routed_other'])}")
            print(f"  propagation p50 {percentile(r1['forced_other'], 50) * 1000:.0f} ms, max "
                  f"{max(r1['forced_other']) * 1000:.0f} ms; until both answer manual_override or back: max "
                  f"{max(max(a, b) for a, b in zip(r1['routed_here'], r1['routed_other'])) * 1000:.0f} ms (target <= 1000 ms)")
            print(f"  audit: {json.dumps(r1['account'])}; responses {r1['statuses']}; store settled in {r1['settle_s']:.1f}s")
            if topo.pg is None:
                print("\nrun 2 skipped: --store given, the bench does not restart a server it did not start")
                return
            r2 = asyncio.run(run_restart(topo, args.restart_load, args.outage))
            a = r2["account"]
            print(f"\nrun 2: PostgreSQL stopped (pg_ctl stop -m fast) for {args.outage:.0f}s of {args.restart_load:.0f}s of load")
            print(f"  responses {r2['statuses']}; answered while the store was down: {r2['answered_during_outage']}")
            print(f"  audit records (both replicas): {json.dumps(r2['counters'])}; store settled in {r2['settle_s']:.1f}s")
            print(f"  audit: {json.dumps(a)}")
            print(f"  after the restart, kill switch on and off again: in force on the other replica in {fmt(r2['flips_after'])} ms")
            print(f"\nkill_switch_propagation_max_ms={max(r1['forced_other']) * 1000:.0f} "
                  f"rows_equal_requests={r1['account']['rows'] == r1['account']['answered']} "
                  f"restart_lost={a['lost']} restart_duplicated={a['duplicated']}")
        finally:
            topo.close()
            if topo.pg is not None:
                topo.pg.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
