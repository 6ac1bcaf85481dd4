"""Turn captures into training rows: deduplicate, balance, wrap in CI context, write train/all.jsonl.

    python assemble.py [--seed 7] [--out ../train/all.jsonl]

Reads $SFGEN_WORK/captures/*.jsonl (written by the fam_*.py scripts and exemplars.py). The same
captures and seed give the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from common import ADJ, CAPTURES, HERE, NOUNS, ORGS, VERBS, repo_name
import wrap as wrapmod
from wrap import wrap

LABELS = ("build", "test", "dependency", "lint", "infrastructure", "security", "access", "unknown")
# At most this many rows per ecosystem x label cell, so that no ecosystem or family dominates;
# fewer where the cell has only exemplars (text written here, not printed by a tool).
CELL_MAX = 110
EXEMPLAR_CELL_MAX = 70
# Linters are the easiest family to generate in bulk; a lower cap keeps lint from being the
# largest label.
LABEL_CELL_MAX = {"lint": 85}
# Thin cells re-use a capture under another CI wrapper and size (a different text around the same
# failure), at most this many times in all.
MAX_REUSE = 3
# The labels the hard stops mostly catch need fewer rows; past this they would crowd the rest.
LABEL_MAX = {"security": 300, "access": 280, "unknown": 260}
# Bodies whose skeletons share at least this fraction of 3-line shingles are one failure.
NEAR_DUP = 0.8
MAX_CHARS = 9000
LICENCE = "Apache-2.0"
# The capture scripts name ecosystems by the toolchain they set up (wrap.py draws each one's setup
# and install noise); rows carry the ecosystem names of ../eval, so that training and evaluation
# counts line up. `ci` (CI-runner and hosted-service messages) has no evaluation counterpart.
ECOSYSTEM_NAMES = {"node": "javascript", "java": "jvm", "scala": "jvm", "c": "c-cpp", "elixir": "erlang-elixir", "erlang": "erlang-elixir",
                   "generic": "other", "perl": "other", "lua": "other"}

_WORDS = set(NOUNS) | set(VERBS) | set(ADJ) | set(ORGS)
_TOKEN = re.compile(r"[A-Za-z]+|\d+")
# The parts of a camelCase or PascalCase name (`EmployeeEmployee`, `sumAccount`, `HTTPClient`).
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


# Paths of this machine that a capture can still carry (relative paths into the tool installs,
# the tmpfs a disk-full run used); what they read as on a runner.
_SCRUB = [
    (re.compile(r"(?:\.\./)+tools/\w+/node_modules"), "node_modules"),
    (re.compile(r"(?:\.\./)+tools/py(?:bare)?/lib/python3\.11/site-packages"), ".venv/lib/python3.11/site-packages"),
    (re.compile(r"/tmp/tiny/\w+"), "{HOME}"),
    (re.compile(r"/tmp/sfgen\b"), "/tmp"),
]


# What no scrub can place in a CI workspace: the throw-away directory's own parents (webpack lists
# every directory it searched). A capture still holding one after scrub() is left out.
_MACHINE = re.compile(r"/tmp/ws/[0-9a-f]{10}")


def scrub(body: str) -> str:
    for pat, rep in _SCRUB:
        body = pat.sub(rep, body)
    return body


def skeleton(body: str) -> list[str]:
    """The body with our random names and all numbers blanked: what is left is the failure's shape."""
    out = []
    for line in body.split("\n")[-80:]:
        toks = []
        for t in _TOKEN.findall(line):
            low = t.lower()
            if t.isdigit():
                toks.append("0")
            elif low in _WORDS or any(w.lower() in _WORDS for w in _CAMEL.findall(t) if len(w) > 3):
                toks.append("w")
            else:
                toks.append(low)
        if toks:
            out.append(" ".join(toks))
    return out


def shingles(lines: list[str]) -> set[int]:
    return {hash("\n".join(lines[i : i + 3])) for i in range(max(1, len(lines) - 2))}


def dedupe(caps: list[dict]) -> list[dict]:
    groups: dict[tuple, list[tuple[dict, set[int]]]] = defaultdict(list)
    kept, dropped = [], 0
    for c in caps:
        sh = shingles(skeleton(c["body"]))
        g = groups[(c["ecosystem"], c["tool"], c["label"])]
        if any(len(sh & o) / max(1, len(sh | o)) >= NEAR_DUP for _, o in g):
            dropped += 1
            continue
        g.append((c, sh))
        kept.append(c)
    print(f"dedupe: kept {len(kept)}, dropped {dropped} near-duplicates", file=sys.stderr)
    return kept


def round_robin(caps: list[dict], n: int, rng: random.Random) -> list[dict]:
    """Up to n captures spread over fault kinds, so that one fault cannot fill a cell."""
    by_fault: dict[str, list[dict]] = defaultdict(list)
    for c in caps:
        by_fault[c["tool"] + "|" + c["fault"].split("+")[0]].append(c)
    for v in by_fault.values():
        rng.shuffle(v)
    out: list[dict] = []
    keys = sorted(by_fault)
    while len(out) < n and any(by_fault.values()):
        for k in keys:
            if by_fault[k] and len(out) < n:
                out.append(by_fault[k].pop())
    return out


def clip(text: str, body_lines: list[list[int]], max_chars: int) -> tuple[str, list[list[int]]]:
    """Keep the log's tail within max_chars, dropping whole lines from the start (the line ranges
    of the failure body move with them)."""
    if len(text) <= max_chars:
        return text, body_lines
    lines = text.split("\n")
    size, drop = len(text), 0
    while size > max_chars and drop < len(lines) - 1:
        size -= len(lines[drop]) + 1
        drop += 1
    return "\n".join(lines[drop:]), [[max(0, a - drop), b - drop] for a, b in body_lines if b - drop > 0]


def size_for(rng: random.Random) -> str:
    return rng.choices(["short", "medium", "long"], weights=[14, 50, 36])[0]


def capture_files(d: Path) -> list[Path]:
    """Each family's finished captures, or the run in progress where it is newer."""
    out = []
    for fam in sorted({p.stem for p in d.glob("*.jsonl")} | {p.stem for p in d.glob("*.partial")}):
        done, partial = d / f"{fam}.jsonl", d / f"{fam}.partial"
        if partial.exists() and (not done.exists() or partial.stat().st_mtime > done.stat().st_mtime):
            out.append(partial)
        else:
            out.append(done)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(HERE.parent / "train" / "all.jsonl"))
    ap.add_argument("--captures", default=str(CAPTURES))
    args = ap.parse_args()
    rng = random.Random(args.seed)

    caps: list[dict] = []
    for p in capture_files(Path(args.captures)):
        for lineno, line in enumerate(p.open(encoding="utf-8"), 1):
            try:
                c = json.loads(line)
            except json.JSONDecodeError:
                # A capture run still writing its .partial file may end in half a line.
                print(f"{p}:{lineno}: skipped an incomplete line", file=sys.stderr)
                continue
            c["body"] = scrub(c["body"])
            if c["label"] not in LABELS:
                sys.exit(f"{p}:{lineno}: label {c['label']!r} is not one of {LABELS}")
            if _MACHINE.search(c["body"]):
                print(f"{p}:{lineno}: left out: the output names this machine's throw-away directory", file=sys.stderr)
                continue
            caps.append(c)
    caps = dedupe(caps)

    # A failure without a command of its own (a cancelled job, a lost runner) borrows one from the
    # captures of its ecosystem, of any label.
    for c in caps:
        if not (c.get("extra") or {}).get("borrow_command"):
            wrapmod.COMMAND_POOL.setdefault(c["ecosystem"], []).append(c["command"])

    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in caps:
        cells[(c["ecosystem"], c["label"])].append(c)

    rows = []
    plan: dict[tuple[str, str], list[tuple[dict, int]]] = {}
    for (eco, label), cs in sorted(cells.items()):
        cell_max = CELL_MAX if any(c["origin"] == "generated" for c in cs) else EXEMPLAR_CELL_MAX
        cell_max = min(cell_max, LABEL_CELL_MAX.get(label, cell_max))
        picked = round_robin(cs, cell_max, rng)
        uses = [(c, 0) for c in picked]
        if len(picked) < cell_max // 2:
            for reuse in range(1, MAX_REUSE):
                uses += [(c, reuse) for c in picked[: cell_max - len(uses)]]
        plan[(eco, label)] = uses
    for label, cap in LABEL_MAX.items():
        total = sum(len(u) for (e, l), u in plan.items() if l == label)
        if total > cap:
            for key in [k for k in plan if k[1] == label]:
                keep = max(1, round(len(plan[key]) * cap / total))
                plan[key] = plan[key][:keep]
    ids: set[str] = set()
    for (cap_eco, label), uses in sorted(plan.items()):
        eco = ECOSYSTEM_NAMES.get(cap_eco, cap_eco)
        for c, r in uses:
            org, repo = repo_name(rng)
            size = size_for(rng)
            w = wrap(c, rng, org, repo, size)
            text, body_lines = clip(w.text, w.body_lines, MAX_CHARS)
            ci = w.wrapper
            key = f"{c['family']}|{c['tool']}|{c['fault']}|{c['command']}|{c['body']}|{r}"
            rid = f"{eco}-{label}-" + hashlib.sha1(key.encode()).hexdigest()[:12]
            while rid in ids:  # identical captures (an empty `unknown` step) still get their own id
                key += "'"
                rid = f"{eco}-{label}-" + hashlib.sha1(key.encode()).hexdigest()[:12]
            ids.add(rid)
            version = c.get("tool_version") or c["tool"]
            if c["origin"] == "generated":
                source = f"{version} output on a synthetic project (data/ci-failures/generate/{c['family'] if c['family'].startswith('fam_') else 'fam_' + c['family']}.py, fault {c['fault']}); CI wrapper {ci}"
            else:
                source = f"exemplar written from the documented message format of {c['tool']} (data/ci-failures/generate/exemplars.py, fault {c['fault']}); CI wrapper {ci}"
            rows.append({"id": rid, "text": text, "label": label, "ecosystem": eco, "tool": c["tool"], "origin": c["origin"], "source": source, "licence": LICENCE,
                         "wrapper": ci, "fault": c["fault"], "command": w.command, "body_lines": body_lines})
    rng.shuffle(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = Counter((r["ecosystem"], r["label"]) for r in rows)
    ecos = sorted({e for e, _ in counts})
    reused = sum(r > 0 for uses in plan.values() for _, r in uses)
    print(f"{out}: {len(rows)} rows ({len(rows) - reused} captures, {reused} re-used under another wrapper), {out.stat().st_size / 1e6:.1f} MB")
    print("| ecosystem | " + " | ".join(LABELS) + " | total |")
    print("|---" * (len(LABELS) + 2) + "|")
    for e in ecos:
        print(f"| {e} | " + " | ".join(str(counts[(e, lbl)] or "") for lbl in LABELS) + f" | {sum(counts[(e, lbl)] for lbl in LABELS)} |")
    print("| total | " + " | ".join(str(sum(counts[(e, lbl)] for e in ecos)) for lbl in LABELS) + f" | {len(rows)} |")
    by_tool: dict[tuple[str, str], Counter] = defaultdict(Counter)
    versions: dict[tuple[str, str], set] = defaultdict(set)
    for r in rows:
        by_tool[(r["origin"], r["tool"])][r["label"]] += 1
    for c in caps:
        if c.get("tool_version"):
            versions[(c["origin"], c["tool"])].add(c["tool_version"].split(";")[-1].strip())
    print()
    print("| origin | tool | version(s) | rows by label |")
    print("|---|---|---|---|")
    for (origin, tool), cnt in sorted(by_tool.items()):
        vs = "; ".join(sorted(versions.get((origin, tool), set()))) or "-"
        print(f"| {origin} | {tool} | {vs} | " + ", ".join(f"{k} {v}" for k, v in cnt.most_common()) + " |")
    wr = Counter(r["wrapper"].split("+")[0] for r in rows)
    print()
    print("wrappers: " + ", ".join(f"{k} {v}" for k, v in wr.most_common()))
    lens = sorted(len(r["text"]) for r in rows)
    print(f"text length (chars): median {lens[len(lens) // 2]}, p10 {lens[len(lens) // 10]}, p90 {lens[9 * len(lens) // 10]}, max {lens[-1]}")


if __name__ == "__main__":
    main()
