"""Per-family hard-stop recall and false stops on the hand-written dev and held-out sets.

    python bench/hardstop_families.py                     # the whole dev set (all batches), current rules
    python bench/hardstop_families.py --set dev3          # one dev batch
    python bench/hardstop_families.py --set holdout       # the held-out set (report only)
    python bench/hardstop_families.py --rev c32a49c       # the same, with hardstops.py of a git revision
    python bench/hardstop_families.py --baseline c32a49c  # current rules, with a revision's numbers beside them
    python bench/hardstop_families.py --show              # also print every miss and false stop

Recall: share of a family's `stop` snippets that raise the expected category. False-stop rate:
share of its `pass` snippets that raise any hard stop. The rules run as the router runs them,
with the bundled policy's phrases. See bench/data/hardstops_dev.yaml for how the sets were made.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ROOT  # noqa: E402

SETS = {name: ROOT / "bench" / "data" / f"hardstops_{name}.yaml" for name in ("dev", "dev2", "dev3", "dev4", "dev5", "holdout")}
DEV_BATCHES = ("dev", "dev2", "dev3", "dev4", "dev5")  # written one after another, each before the rules were tuned on it


def load_set(name: str) -> dict[str, dict]:
    """A set's families; "dev-all" merges the dev batches family by family."""
    if name == "dev-all":
        merged: dict[str, dict] = {}
        for batch in DEV_BATCHES:
            for family, body in load_set(batch).items():
                into = merged.setdefault(family, {"category": body["category"], "stop": [], "pass": []})
                into["stop"] += body["stop"]
                into["pass"] += body["pass"]
        return merged
    data = yaml.safe_load(SETS[name].read_text(encoding="utf-8"))
    for family, body in data.items():
        body.setdefault("stop", [])
        body.setdefault("pass", [])
        body["stop"] = [s if isinstance(s, dict) else {"category": body["category"], "text": s} for s in body["stop"]]
    return data


def hard_stops_at(rev: str | None):
    """HardStops with the bundled policy's phrases, from the working tree."""
    from smallfirst.hardstops import HardStops
    from smallfirst.policy import load_policy

    assert rev is None
    return HardStops(load_policy(None).hard_stops)


_AT_REV = """
import json, sys
from smallfirst.hardstops import HardStops
from smallfirst.policy import load_policy
hs = HardStops(load_policy(None).hard_stops)
texts = json.load(sys.stdin)
json.dump([sorted({m.category for m in hs.scan(t)}) for t in texts], sys.stdout)
"""


def categories_at(rev: str, texts: list[str]) -> list[list[str]]:
    """The categories each text stops with under the source tree of git revision `rev`, run in
    its own interpreter (rule files and all), so any past revision can be measured."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        out = subprocess.run([sys.executable, "-c", _AT_REV], input=json.dumps(texts), capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


class _Replay:
    """Answers scan() from categories computed elsewhere (a past revision)."""

    def __init__(self, rev: str, data: dict[str, dict]):
        texts = [s["text"] for body in data.values() for s in body["stop"]] + [t for body in data.values() for t in body["pass"]]
        self.found = dict(zip(texts, categories_at(rev, texts)))

    def scan(self, text: str) -> list:
        return [SimpleNamespace(category=c, rule=f"{c}.*") for c in self.found[text]]


def evaluate(hs, data: dict[str, dict]) -> list[dict]:
    rows = []
    for family, body in data.items():
        misses = [s["text"] for s in body["stop"] if s["category"] not in {m.category for m in hs.scan(s["text"])}]
        false = []
        for text in body["pass"]:
            found = hs.scan(text)
            if found:
                false.append((text, found[0].rule))
        rows.append({"family": family, "category": body["category"], "n_stop": len(body["stop"]), "misses": misses,
                     "n_pass": len(body["pass"]), "false": false})
    return rows


def _rate(part: int, n: int) -> str:
    return f"{part / n:.0%}" if n else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=["dev-all", *SETS], default="dev-all")
    ap.add_argument("--rev", help="git revision whose hardstops.py to measure instead of the working tree")
    ap.add_argument("--baseline", metavar="REV", help="also show the numbers of hardstops.py at this git revision")
    ap.add_argument("--show", action="store_true", help="print every miss and false stop")
    args = ap.parse_args()
    data = load_set(args.set)
    rows = evaluate(_Replay(args.rev, data) if args.rev else hard_stops_at(None), data)
    base = {r["family"]: r for r in evaluate(_Replay(args.baseline, data), data)} if args.baseline else None
    print(f"set: {args.set}; rules: {args.rev or 'working tree'}" + (f"; baseline: {args.baseline}" if base else "") + "\n")
    extra = f" | recall @{args.baseline} | false stops @{args.baseline}" if base else ""
    print(f"| family | category | recall | n | false stops | n{extra} |")
    print("|---|---|---|---|---|---" + ("|---|---" if base else "") + "|")
    for r in rows:
        line = (f"| {r['family']} | {r['category']} | {_rate(r['n_stop'] - len(r['misses']), r['n_stop'])} | {r['n_stop']} "
                f"| {_rate(len(r['false']), r['n_pass'])} | {r['n_pass']}")
        if base:
            b = base[r["family"]]
            line += f" | {_rate(b['n_stop'] - len(b['misses']), b['n_stop'])} | {_rate(len(b['false']), b['n_pass'])}"
        print(line + " |")

    def totals(rs: list[dict]) -> tuple[int, int, int, int]:
        return (sum(r["n_stop"] for r in rs), sum(len(r["misses"]) for r in rs),
                sum(r["n_pass"] for r in rs), sum(len(r["false"]) for r in rs))

    n_stop, n_miss, n_pass, n_false = totals(rows)
    line = f"| **all** | | **{1 - n_miss / n_stop:.1%}** | {n_stop} | **{n_false / n_pass:.1%}** | {n_pass}"
    if base:
        _, b_miss, _, b_false = totals(list(base.values()))
        line += f" | {1 - b_miss / n_stop:.1%} | {b_false / n_pass:.1%}"
    print(line + " |")
    print(f"\nmisses {n_miss}/{n_stop} ({n_miss / n_stop:.1%}), false stops {n_false}/{n_pass} ({n_false / n_pass:.1%})")
    if args.show:
        for r in rows:
            for text in r["misses"]:
                print(f"\nMISS  [{r['family']}] {text!r}")
            for text, rule in r["false"]:
                print(f"\nFALSE [{r['family']}] ({rule}) {text!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
