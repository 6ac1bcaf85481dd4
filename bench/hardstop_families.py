"""Per-family hard-stop recall and false stops on the hand-written dev and held-out sets.

    python bench/hardstop_families.py                     # the whole dev set (all batches), current rules
    python bench/hardstop_families.py --set dev3          # one dev batch
    python bench/hardstop_families.py --set holdout       # the held-out set (report only)
    python bench/hardstop_families.py --rev c32a49c       # the same, with hardstops.py of a git revision
    python bench/hardstop_families.py --show              # also print every miss and false stop

Recall: share of a family's `stop` snippets that raise the expected category. False-stop rate:
share of its `pass` snippets that raise any hard stop. The rules run as the router runs them,
with the bundled policy's phrases. See bench/data/hardstops_dev.yaml for how the sets were made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ROOT, module_at  # noqa: E402

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
    """HardStops with the bundled policy's phrases, from the working tree or from a git revision."""
    from smallfirst.policy import load_policy

    phrases = load_policy(None).hard_stops
    if rev is None:
        from smallfirst.hardstops import HardStops

        return HardStops(phrases)
    return module_at(rev, "src/smallfirst/hardstops.py").HardStops(phrases)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=["dev-all", *SETS], default="dev-all")
    ap.add_argument("--rev", help="git revision whose hardstops.py to measure instead of the working tree")
    ap.add_argument("--show", action="store_true", help="print every miss and false stop")
    args = ap.parse_args()
    rows = evaluate(hard_stops_at(args.rev), load_set(args.set))
    print(f"set: {args.set}; rules: {args.rev or 'working tree'}\n")
    print("| family | category | recall | n | false stops | n |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        recall = f"{1 - len(r['misses']) / r['n_stop']:.0%}" if r["n_stop"] else "-"
        false = f"{len(r['false']) / r['n_pass']:.0%}" if r["n_pass"] else "-"
        print(f"| {r['family']} | {r['category']} | {recall} | {r['n_stop']} | {false} | {r['n_pass']} |")
    n_stop = sum(r["n_stop"] for r in rows)
    n_miss = sum(len(r["misses"]) for r in rows)
    n_pass = sum(r["n_pass"] for r in rows)
    n_false = sum(len(r["false"]) for r in rows)
    print(f"| **all** | | **{1 - n_miss / n_stop:.1%}** | {n_stop} | **{n_false / n_pass:.1%}** | {n_pass} |")
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
