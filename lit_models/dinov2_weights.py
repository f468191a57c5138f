"""A Hugging Face DINOv2 backbone exported to ONNX, read back as timm's ``vit_*_patch14_dinov2`` state dict.

The exporter keeps the names of embeddings, norms, layer scales and biases, but stores each linear weight
transposed under an anonymous ``onnx::MatMul_*`` name; each is identified by the bias of the ``Add`` that follows
its ``MatMul`` in the graph. q, k and v join into timm's fused ``qkv``; the position embedding was folded into two
anonymous constants (the class token's, and the patch grid's) that join again. Every tensor's shape is checked
against the timm model's.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from archbench.errors import DataError, first_line

_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)$")
_RENAMES = {  # within a layer: Hugging Face -> timm
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias", "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
    "attention.o_proj.weight": "attn.proj.weight", "attention.o_proj.bias": "attn.proj.bias",  # transformers 5
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}  # fmt: skip
_OUTER = {"embeddings.cls_token": "cls_token", "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
          "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias", "layernorm.weight": "norm.weight",
          "layernorm.bias": "norm.bias"}  # fmt: skip


def named_tensors(graph, where: str) -> dict[str, np.ndarray]:
    """The graph's tensors under their Hugging Face names: named initializers as they are, and each anonymous
    MatMul weight (transposed back to torch's ``out x in``) under the name of the bias added after it."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensors = {name: numpy_helper.to_array(t) for name, t in inits.items() if not name.startswith("onnx::")}
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or not node.input[1].startswith("onnx::MatMul"):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i in inits and not i.startswith("onnx::")]
        if len(biases) != 1 or not biases[0].endswith(".bias"):
            raise DataError(
                f"{where}: the weight {node.input[1]} is not followed by one named bias (found {biases})"
            )
        tensors[biases[0][: -len("bias")] + "weight"] = numpy_helper.to_array(inits[node.input[1]]).T
    return tensors


def position_embedding(graph, width: int, where: str) -> np.ndarray:
    """The two folded position constants, (1, 1, D) and (1, N, D) with N a square, joined: (1, 1 + N, D)."""
    from onnx import numpy_helper

    anonymous = [numpy_helper.to_array(t) for t in graph.initializer if t.name.startswith("onnx::")
                 and not t.name.startswith("onnx::MatMul") and len(t.dims) == 3 and t.dims[2] == width]  # fmt: skip
    cls = [a for a in anonymous if a.shape[:2] == (1, 1)]
    grid = [
        a
        for a in anonymous
        if a.shape[0] == 1 and a.shape[1] > 1 and math.isqrt(a.shape[1]) ** 2 == a.shape[1]
    ]
    if len(cls) != 1 or len(grid) != 1:
        raise DataError(
            f"{where}: expected one class-token and one patch-grid position constant of width {width}, found "
            f"{len(cls)} and {len(grid)}"
        )
    return np.concatenate([cls[0], grid[0]], axis=1)


def timm_state_from_onnx(path: str | Path, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DINOv2 backbone of the ONNX file at ``path`` as tensors named and shaped as ``target`` (a timm
    ``vit_*_patch14_dinov2`` state dict); any tensor missing, left over or misshapen stops with its name."""
    import onnx

    where = str(path)
    try:
        graph = onnx.load(str(path)).graph
    except Exception as err:  # protobuf's DecodeError, a missing file: one line
        raise DataError(
            f"{where}: not a readable ONNX file ({type(err).__name__}: {first_line(err)})"
        ) from None
    hf = named_tensors(graph, where)
    prefix = next((k[: -len("embeddings.cls_token")] for k in hf if k.endswith("embeddings.cls_token")), None)
    if prefix is None:
        raise DataError(f"{where}: no embeddings.cls_token: not a DINOv2 (Hugging Face Dinov2Model) export")
    hf = {k[len(prefix) :]: v for k, v in hf.items() if k.startswith(prefix)}
    state: dict[str, np.ndarray] = {}
    for name, value in hf.items():
        if name in _OUTER:
            state[_OUTER[name]] = value
        elif (match := _LAYER.match(name)) and match.group(2) in _RENAMES:
            state[f"blocks.{match.group(1)}.{_RENAMES[match.group(2)]}"] = value
    for i in sorted({int(m.group(1)) for k in hf if (m := _LAYER.match(k))}):
        # transformers 4 names them attention.attention.query/key/value, transformers 5 attention.q_proj/...
        parts = [hf.get(f"encoder.layer.{i}.attention.attention.{old}.{kind}",
                        hf.get(f"encoder.layer.{i}.attention.{new}.{kind}")) for kind in ("weight", "bias")
                 for old, new in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))]  # fmt: skip
        if any(p is None for p in parts):
            raise DataError(f"{where}: layer {i} lacks a query, key or value weight or bias")
        state[f"blocks.{i}.attn.qkv.weight"] = np.concatenate(parts[:3], axis=0)
        state[f"blocks.{i}.attn.qkv.bias"] = np.concatenate(parts[3:], axis=0)
    if "embeddings.position_embeddings" in hf:  # kept whole where the export did not fold it
        state["pos_embed"] = hf["embeddings.position_embeddings"]
    else:
        state["pos_embed"] = position_embedding(graph, state["cls_token"].shape[-1], where)
    missing, extra = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or extra:
        raise DataError(
            f"{where}: does not map onto the timm model: missing {missing[:4]}, left over {extra[:4]}"
        )
    for name, value in state.items():
        if tuple(value.shape) != tuple(target[name].shape):
            raise DataError(
                f"{where}: {name} has shape {tuple(value.shape)}, the timm model's {tuple(target[name].shape)}"
            )
    return {name: torch.from_numpy(np.array(state[name], dtype=np.float32, order="C")) for name in target}
