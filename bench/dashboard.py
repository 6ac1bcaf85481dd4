"""Dashboard render time over a large audit store.

Seeds an audit SQLite file with --rows decisions (default 100,000) spread over two weeks, across
tasks, routes, reasons and groups, serves the standalone dashboard on 127.0.0.1 and times
`GET /dashboard` (first request, then repeats) and `GET /dashboard/api/summary` for each window.
The issue's bar: first render under 1 s with 100,000 records.

    python bench/dashboard.py [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, percentile  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from smallfirst.audit import AuditRecord, SQLiteSink, _encode  # noqa: E402
from smallfirst.server.dashboard_routes import create_dashboard_app  # noqa: E402

TASKS = ("classify_issue", "summarize_log", "shape_json", "propose_code_change")
REASONS = ("confidence_low", "hard_stop_access", "hard_stop_novel", "schema_invalid", "policy_requires_frontier")


def seed(path: Path, n: int, now: float) -> None:
    rnd = random.Random(0)
    SQLiteSink(path)._connect().close()
    rows = []
    for i in range(n):
        escalated = rnd.random() < 0.3
        reason = rnd.choice(REASONS) if escalated else None
        rec = AuditRecord(
            decision_id=f"{i:012x}{rnd.getrandbits(80):020x}", ts=now - rnd.random() * 14 * 86400,
            task_type=rnd.choice(TASKS), mode="live", route="frontier" if escalated else "local",
            route_candidate="frontier" if escalated else "local", reason=reason,
            latency_ms={"total": 90.0, "local": 80.0, "frontier": rnd.uniform(300, 3000) if escalated else 0.0},
            cost_usd=0.004 if escalated else 0.000001, frontier_only_cost_usd=0.004,
            user_group=rnd.choice(("nightly", "default", "canary")), local_model="all-MiniLM-L6-v2",
            frontier_model="claude-sonnet-4-6" if escalated else None,
            outcome="answered_frontier" if escalated else "answered_local", preview="[INFO] masked preview",
            review_label=rnd.choice((None, None, None, "accept", "escalate")) if not escalated else None,
        )
        rows.append(_encode(rec.to_row()))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(f"INSERT INTO decisions VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.close()


async def measure(path: Path, repeat: int) -> None:
    app = create_dashboard_app(str(path))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    print(f"{'request':<42} {'first ms':>9} {'p50 ms':>9} {'max ms':>9} {'bytes':>9}")
    async with aiohttp.ClientSession() as s:
        for window in ("hour", "day", "week", "all"):
            for path_ in (f"/dashboard?window={window}", f"/dashboard/api/summary?window={window}"):
                times, size = [], 0
                for _ in range(repeat + 1):
                    t = time.perf_counter()
                    async with s.get(base + path_) as r:
                        body = await r.read()
                        assert r.status == 200, (r.status, body[:200])
                    times.append((time.perf_counter() - t) * 1000)
                    size = len(body)
                rest = times[1:]
                print(f"{path_:<42} {times[0]:>9.1f} {percentile(rest, 50):>9.1f} {max(rest):>9.1f} {size:>9}")
    await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        t = time.perf_counter()
        seed(path, args.rows, time.time())
        print(f"seeded {args.rows:,} decisions in {time.perf_counter() - t:.1f}s")
        asyncio.run(measure(path, args.repeat))


if __name__ == "__main__":
    main()
