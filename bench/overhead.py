"""Routing overhead per decision, with an instant local backend.

What is measured is everything smallfirst adds around a model call: flags, policy lookup, input
guard, hard stops, log compression (classify_issue compresses its input), the gate and the audit
submit (the SQLite write itself happens on the writer thread, which runs during the measurement
and competes for the GIL, as it does in production). Inputs are real CI log text from BUMP,
cut to 1k and 12k characters.

    python bench/overhead.py [--n 3000] [--data ../shared/data/bump/bump_failures.jsonl] [--hardstops-baseline REV]

--hardstops-baseline adds a row timing hardstops.py as it was at git revision REV, on the same
inputs in the same run, so a change to the hard stops is measured as a ratio.

Target (issue 2): p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from machine import describe, module_at, percentile, time_calls  # noqa: E402

from smallfirst.audit import AuditLog  # noqa: E402
from smallfirst.gate import check_gate  # noqa: E402
from smallfirst.hardstops import HardStops  # noqa: E402
from smallfirst.logtext import compress_log  # noqa: E402
from smallfirst.policy import load_policy  # noqa: E402
from smallfirst.router import LOCAL_INPUT_BUDGET, Router  # noqa: E402
from smallfirst.tasks import LocalOutput, Task  # noqa: E402


class InstantBackend:
    name, sha256 = "instant", "0" * 64

    async def complete(self, text, spec):
        return LocalOutput(answer="build", model=self.name, label="build", confidence=0.95, confidence_raw=0.95,
                           model_sha256=self.sha256)


def load_inputs(data: Path, size: int, count: int = 50) -> list[str]:
    hs = HardStops.from_policy(load_policy(None))
    out = []
    for line in data.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        if len(text) >= size and hs.first(text[-size:]) is None:  # measure the full path, no early exit
            out.append(text[-size:])
        if len(out) == count:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data" / "bump" / "bump_failures.jsonl"))
    ap.add_argument("--hardstops-baseline", metavar="REV", help="also time hardstops.py as of this git revision")
    args = ap.parse_args()
    print(describe())
    policy = load_policy(None)
    spec = policy.tasks["classify_issue"]
    hs = HardStops.from_policy(policy)
    baseline = None
    if args.hardstops_baseline:
        baseline = module_at(args.hardstops_baseline, "src/smallfirst/hardstops.py").HardStops(policy.hard_stops)
    answer = LocalOutput(answer="build", model="instant", label="build", confidence=0.95)

    # The same task with compression off: the routing overhead proper (compress_log prepares
    # the model's input and is reported on its own line).
    plain = policy.model_copy(
        update={"tasks": {**policy.tasks, "classify_issue": spec.model_copy(update={"compress_input": False})}}
    )
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog.sqlite(Path(tmp) / "bench.db")
        router = Router(policy, audit=audit, backends={"local_classifier": InstantBackend()})
        router_plain = Router(plain, audit=audit, backends={"local_classifier": InstantBackend()})
        loop = asyncio.new_event_loop()
        print(f"{'input':>6} {'stage':<30} {'p50 ms':>8} {'p99 ms':>8}")
        summary = {}
        for size in (1000, 12000):
            inputs = load_inputs(Path(args.data), size)
            stages = {
                "hard stops": lambda t: hs.first(t),
                **({f"hard stops @{args.hardstops_baseline}": lambda t: baseline.first(t)} if baseline else {}),
                "compress_log": lambda t: compress_log(t, LOCAL_INPUT_BUDGET),
                "gate": lambda t: check_gate(spec, answer, t),
                "route(), no compression": lambda t: loop.run_until_complete(
                    router_plain.aroute(Task(t, "classify_issue"))
                ),
                "route(), with compress_log": lambda t: loop.run_until_complete(
                    router.aroute(Task(t, "classify_issue"))
                ),
            }
            for name, fn in stages.items():
                time_calls(fn, inputs, 200)  # warm-up
                times = time_calls(fn, inputs, args.n)
                p50, p99 = percentile(times, 50), percentile(times, 99)
                print(f"{size:>6} {name:<30} {p50:>8.3f} {p99:>8.3f}")
                summary[(size, name)] = (p50, p99)
        router.close()
        audit.close()
        print(f"audit: {audit.stats.written} records written, {audit.stats.write_errors} write errors")
    e2e = [summary[(s, "route(), no compression")][1] for s in (1000, 12000)]
    comp = [summary[(s, "route(), with compress_log")][1] for s in (1000, 12000)]
    print(
        f"p99_1k_ms={e2e[0]:.3f} p99_12k_ms={e2e[1]:.3f} "
        f"p99_1k_compressed_ms={comp[0]:.3f} p99_12k_compressed_ms={comp[1]:.3f} target_p99_ms=1.0"
    )


if __name__ == "__main__":
    main()
