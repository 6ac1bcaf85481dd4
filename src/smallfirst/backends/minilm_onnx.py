"""all-MiniLM-L6-v2 with int8 weights on ONNX Runtime: the embedding classifier's default path.

The numpy float32 forward pass in minilm.py stays the reference; this path computes nearly the
same embeddings (cosine >= 0.997 to it on real CI logs, >= 0.99 to sentence-transformers' own;
tests/test_minilm_onnx.py) for a quarter of the CPU time (bench/local_models.py), because its matrix
products run in int8:

- the weights of the 36 dense layers are quantised here to int8, symmetric, one scale per output
  column; ONNX Runtime quantises each layer's input to uint8 as it runs (DynamicQuantizeMatMul),
  one scale per token group (below), so no calibration data goes into the graph;
- embeddings, LayerNorm, attention and GELU stay float32;
- the graph reads one window per call, without padding: the input scale is taken over the whole
  input tensor, so in a batch one text's embedding would depend on its neighbours.

Nothing is downloaded. The graph is built from the pinned model.safetensors on first use, the
same bytes every time, and cached like the Gemma GGUF; the file is checked against its pinned
sha256 whenever it is loaded. A cached file that differs is rebuilt; a build that differs from the
pin is refused. Embeddings from this graph are not those of the reference path, so the graph's
sha256 is the encoder's identity: heads record it, and a head trained on another path is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smallfirst.backends.base import BackendError
from smallfirst.backends.llamacpp import cache_dir
from smallfirst.backends.minilm import MINILM_SHA256, MODEL_NAME, MiniLMEncoder, ModelIntegrityError, verify_sha256
from smallfirst.heads import EMBEDDING_DIM

log = logging.getLogger(__name__)

# model.safetensors pin -> sha256 of the graph build_graph() makes from it. A model without an
# entry has no fast path and runs on the reference path.
GRAPH_SHA256 = {
    MINILM_SHA256: "e70c4b4413ff1e44112c428991f5d890d009ba65f6ab3478edd33341fc2a6249",
}
_MS = "com.microsoft"  # ONNX Runtime's contrib operators: fused attention, GELU, int8 matmul
_OPSET = 17  # LayerNormalization
_IR_VERSION = 8
# Symmetric int8 without -128: the weight grid is the same on both sides of zero.
_QMAX = 127.0
# Token groups, each quantised with its own scale as it enters a dense layer: [CLS], the text,
# [SEP]. BERT gives [CLS] and [SEP] activations several times larger than any text token's
# (28 in one channel at [CLS] against at most 11 elsewhere, on BUMP logs), and a single scale
# would spend the int8 grid on them: cosine to the reference went from 0.974 to 0.993 on short
# texts and from 0.992 to 0.998 on 256-token logs, for about 1 ms.
_GROUPS = {"cls": (0, 1), "text": (1, -1), "sep": (-1, 1 << 62)}


def graph_path(graph_sha256: str) -> Path:
    # The hash in the name: two smallfirst versions sharing a cache never fight over one file.
    return cache_dir() / f"{MODEL_NAME}.int8.{graph_sha256[:16]}.onnx"


# ---------------------------------------------------------------- building the graph


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) float32 -> int8 weights and one float32 scale per output column."""
    scale = np.abs(w).max(axis=0) / np.float32(_QMAX)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.round(w / scale), -_QMAX, _QMAX).astype(np.int8)
    return q, scale


def build_graph(model_dir: Path) -> bytes:
    """The int8 graph for the BERT encoder in `model_dir`, serialised: input_ids (1, tokens) int32
    -> embedding (1, 384), mean-pooled and L2-normalised like sentence-transformers."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise BackendError(f"{model_dir / 'config.json'}: not a plain BERT encoder this backend can run")
    tensors = load_file(str(model_dir / "model.safetensors"))
    heads, hidden, eps = int(config["num_attention_heads"]), int(config["hidden_size"]), float(config["layer_norm_eps"])

    def get(name: str) -> np.ndarray:
        arr = tensors.get(name, tensors.get("bert." + name))
        if arr is None:
            raise BackendError(f"{model_dir / 'model.safetensors'}: missing tensor {name}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, extra_outputs: Sequence[str] = (), **attrs: Any) -> str:
        domain = _MS if op in ("EmbedLayerNormalization", "DynamicQuantizeMatMul", "MultiHeadAttention", "BiasGelu") else ""
        nodes.append(helper.make_node(op, inputs, [output, *extra_outputs], name=output, domain=domain, **attrs))
        return output

    def int8_weights(name: str, w: np.ndarray, b: np.ndarray) -> tuple[list[str], str]:
        """Initializers for x @ w + b; w is (in, out)."""
        q, scale = quantize_columns(np.ascontiguousarray(w))
        zero = np.zeros(q.shape[1], np.int8)
        return [const(name + ".w_int8", q), const(name + ".w_scale", scale), const(name + ".w_zero", zero)], const(name + ".b", b)

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        # Stored (out, in) like torch.nn.Linear; the graph multiplies x @ W.
        return get(prefix + ".weight").T, get(prefix + ".bias")

    def layer_norm(name: str, prefix: str) -> tuple[str, str]:
        return const(name + ".g", get(prefix + ".weight")), const(name + ".b", get(prefix + ".bias"))

    # Token type is always 0 for one sentence: its row is folded into the position table.
    position = get("embeddings.position_embeddings.weight") + get("embeddings.token_type_embeddings.weight")[0]
    embedded = node("EmbedLayerNormalization", [
        "input_ids", "", const("word_embeddings", get("embeddings.word_embeddings.weight")), const("position_embeddings", position),
        "", *layer_norm("embeddings.ln", "embeddings.LayerNorm"),
    ], "embeddings", extra_outputs=["mask_index"], epsilon=eps)  # mask_index: unused, but the op has it
    const("token_axis", np.array([1], np.int64))
    for group, (start, end) in _GROUPS.items():
        const(f"{group}.start", np.array([start], np.int64))
        const(f"{group}.end", np.array([end], np.int64))
    thirds = const("qkv_split", np.array([hidden] * 3, dtype=np.int64))

    def tokens(x: str, group: str) -> str:
        return node("Slice", [x, f"{group}.start", f"{group}.end", "token_axis"], f"{x}.{group}")

    x = {g: tokens(embedded, g) for g in _GROUPS}
    for i in range(int(config["num_hidden_layers"])):
        p, n = f"encoder.layer.{i}.", f"layer{i}"
        qkv_w, qkv_b = zip(*(linear(p + f"attention.self.{t}") for t in ("query", "key", "value")))
        qkv_int8, qkv_bias = int8_weights(n + ".qkv", np.concatenate(qkv_w, axis=1), np.concatenate(qkv_b))
        out_int8, out_bias = int8_weights(n + ".attention_out", *linear(p + "attention.output.dense"))
        up_int8, up_bias = int8_weights(n + ".up", *linear(p + "intermediate.dense"))
        down_int8, down_bias = int8_weights(n + ".down", *linear(p + "output.dense"))
        ln1 = layer_norm(n + ".ln1", p + "attention.output.LayerNorm")
        ln2 = layer_norm(n + ".ln2", p + "output.LayerNorm")

        # Attention mixes the tokens, so the groups meet there and part again after it.
        qkv = node("Concat", [node("DynamicQuantizeMatMul", [x[g], *qkv_int8, qkv_bias], f"{n}.qkv.{g}") for g in _GROUPS],
                   n + ".qkv", axis=1)
        nodes.append(helper.make_node("Split", [qkv, thirds], [n + ".q", n + ".k", n + ".v"], name=n + ".split", axis=2))
        context = node("MultiHeadAttention", [n + ".q", n + ".k", n + ".v"], n + ".attention", num_heads=heads)
        for g in _GROUPS:
            attended = node("DynamicQuantizeMatMul", [tokens(context, g), *out_int8, out_bias], f"{n}.attention_out.{g}")
            h = node("LayerNormalization", [node("Add", [attended, x[g]], f"{n}.residual1.{g}"), *ln1], f"{n}.ln1.{g}", axis=-1, epsilon=eps)
            up = node("DynamicQuantizeMatMul", [h, *up_int8], f"{n}.up.{g}")
            gelu = node("BiasGelu", [up, up_bias], f"{n}.gelu.{g}")  # BERT's exact (erf) GELU, bias fused
            down = node("DynamicQuantizeMatMul", [gelu, *down_int8, down_bias], f"{n}.down.{g}")
            x[g] = node("LayerNormalization", [node("Add", [down, h], f"{n}.residual2.{g}"), *ln2], f"{n}.ln2.{g}", axis=-1, epsilon=eps)
    hidden_states = node("Concat", [x[g] for g in _GROUPS], "hidden_states", axis=1)
    pooled = node("ReduceMean", [hidden_states], "mean_pool", axes=[1], keepdims=0)  # every token is real: no padding
    node("LpNormalization", [pooled], "embedding", axis=1, p=2)

    graph = helper.make_graph(
        nodes,
        f"{MODEL_NAME}-int8",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, [1, "tokens"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, EMBEDDING_DIM])],
        initializers,
    )
    model = helper.make_model(
        graph,
        ir_version=_IR_VERSION,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_MS, 1)],
        producer_name="smallfirst",
    )
    # Every field is set here, none from the onnx version's defaults, so the bytes (and the
    # pinned hash) depend on the weights and this function only.
    return model.SerializeToString(deterministic=True)


def ensure_graph(model_dir: Path, weights_sha256: str, graph_sha256: str) -> bytes:
    """The verified graph bytes: from the cache, or built (and cached) when the cache has no
    good copy. What is returned is what was hashed, so nothing can change between check and use."""
    path = graph_path(graph_sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise BackendError(f"cannot read the cached int8 graph {path}: {exc.strerror or exc}") from exc
    if data is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual == graph_sha256:
            return data
        log.warning("%s: sha256 %s, pinned %s: rebuilding it from the model", path, actual, graph_sha256)
    verify_sha256(model_dir / "model.safetensors", weights_sha256)
    data = build_graph(model_dir)
    actual = hashlib.sha256(data).hexdigest()
    if actual != graph_sha256:
        raise ModelIntegrityError(
            f"the int8 graph built from {model_dir} has sha256 {actual}, pinned {graph_sha256}; refusing to use it. "
            f"Either {model_dir / 'config.json'} is not the pinned model's, or {_onnx_version()} serialises "
            f"differently from the versions checked (onnx 1.17 to 1.23)"
        )
    _write_atomically(path, data)
    return data


def _onnx_version() -> str:
    import onnx

    return f"onnx {onnx.__version__}"


def _write_atomically(path: Path, data: bytes) -> None:
    # A private temporary file renamed into place: two processes starting together never see a
    # half-written graph. A cache that cannot be written only costs a rebuild next time.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".building-", suffix=".onnx", dir=path.parent)
    except OSError as exc:
        log.warning("cannot cache the int8 graph in %s: %s", path.parent, exc)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared SMALLFIRST_CACHE to one user
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        log.warning("cannot cache the int8 graph at %s: %s", path, exc)


# ---------------------------------------------------------------- the encoder


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_session(graph: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Workers spin between operators (ORT's default): on an idle 2-core machine a 256-token window
    # took 8.2 ms at p50 with spinning and 10.6 ms with sleeping workers. On a machine busy with
    # other work spinning costs CPU instead; `threads: 1` on the model has no workers at all.

    # The graph is fused by hand. ORT's own fusions would turn each Add + LayerNormalization into
    # SkipLayerNormalization, which measured 6x slower here (0.43 vs 0.07 ms for each of the 12).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # On x86 CPUs without VNNI, uint8 x int8 products can saturate in 16 bits; ORT then widens
    # the weights to uint8 at load time. A no-op on VNNI and ARM.
    options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxMiniLMEncoder(MiniLMEncoder):
    """all-MiniLM-L6-v2 on ONNX Runtime with int8 weights. `sha256` is the graph's pin (the
    encoder's identity); `weights_sha256` the pin of the model.safetensors it is built from."""

    def __init__(self, model_dir: Path | str | None = None, sha256: str = MINILM_SHA256, graph_sha256: str | None = None,
                 threads: int | None = None):
        super().__init__(model_dir, sha256)
        self.threads = threads or _cores()
        pinned = graph_sha256 or GRAPH_SHA256.get(self.weights_sha256)
        if pinned is None:
            raise BackendError(f"no int8 graph is pinned for model.safetensors sha256 {self.weights_sha256}")
        self.sha256 = pinned.lower()
        self._session: Any = None

    def _load_model(self, model_dir: Path) -> None:
        self._session = make_session(ensure_graph(model_dir, self.weights_sha256, self.sha256), self.threads)

    def encode_ids(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        self.load()
        out = np.zeros((len(windows), EMBEDDING_DIM), dtype=np.float32)
        for i, window in enumerate(windows):  # one at a time: see the module docstring
            ids = np.array([[self._cls, *window[: self.max_body], self._sep]], dtype=np.int32)
            out[i] = self._session.run(None, {"input_ids": ids})[0][0]
        return out
