"""Rebuild src/smallfirst/data/demo/ci_logs.jsonl: the real CI logs `smallfirst demo` triages.

Selection is mechanical, not by how well the router does on them: per BUMP failure category,
the first rows in sha256(id) order (6/6/4/2/1/1), plus every row whose log carries a registry
HTTP 403 (the case that must escalate). The bundled classifier head is trained with these ids
held out (see README), so the demo never shows rows the head has seen.

    python scripts/make_demo_set.py ../shared/data/bump/bump_failures.jsonl
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

PER_LABEL = {
    "COMPILATION_FAILURE": 6,
    "TEST_FAILURE": 6,
    "ENFORCER_FAILURE": 4,
    "DEPENDENCY_LOCK_FAILURE": 2,
    "WERROR_FAILURE": 1,
    "DEPENDENCY_RESOLUTION_FAILURE": 1,
}
REGISTRY_403 = re.compile(r"status code: 403|403 Forbidden|Forbidden \(403\)")
ATTRIBUTION = (
    "BUMP benchmark, github.com/chains-project/bump @ 324d5513aa5ca40b5cb32de5b816a58fa60bd7bb, "
    "MIT licence (Copyright 2023 CHAINS research project at KTH); logs of building the named "
    "open-source projects, registry host names replaced by <registry-host>."
)


def main(src: str, out: str = "src/smallfirst/data/demo/ci_logs.jsonl") -> None:
    rows = [json.loads(line) for line in Path(src).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    picked: list[dict] = []
    for label, n in PER_LABEL.items():
        picked += [r for r in rows if r["label"] == label][:n]
    picked += [r for r in rows if REGISTRY_403.search(r["text"]) and r not in picked]
    with open(out, "w", encoding="utf-8") as f:
        for r in picked:
            keep = {k: r[k] for k in ("id", "label", "project", "pr_url", "dependency", "source", "text")}
            keep["attribution"] = ATTRIBUTION
            f.write(json.dumps(keep, ensure_ascii=False) + "\n")
    print(f"wrote {len(picked)} logs to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
