"""One line naming the machine a benchmark ran on; every bench prints it first."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], n: int) -> list[float]:
    """Milliseconds per call of fn over n calls, cycling through inputs."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(inputs[i % len(inputs)])
        times.append((time.perf_counter() - t) * 1000)
    return times


def module_at(rev: str, relpath: str) -> ModuleType:
    """A module of this repository as it was at git revision `rev`, loaded beside the current one
    (its own imports resolve to the working tree), to compare old and new in one run."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{relpath}"], check=True, capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False, encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"{Path(relpath).stem}_at_{rev}", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def time_side_by_side(fns: dict[str, Callable[[Any], Any]], inputs: Sequence[Any], n: int,
                      block: int = 10) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU milliseconds per call of each fn, n calls each, taken in turns of `block`
    calls so that every fn sees the same stretches of a busy machine (and a runtime's thread
    pool is not woken and put to sleep on every call). CPU time is the process's, all threads
    together: on a machine shared with other work it is the steadier number."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for start in range(0, n, block):
        for name, fn in fns.items():
            for i in range(start, min(n, start + block)):
                c, t = time.process_time(), time.perf_counter()
                fn(inputs[i % len(inputs)])
                times[name][0].append((time.perf_counter() - t) * 1000)
                times[name][1].append((time.process_time() - c) * 1000)
    return times
