"""Sanity checks run before training: one traceless forward and backward of the first batch (``probe``)
finds trainable parameters that get no gradient, and counts the step's FLOPs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from archbench.errors import NonFiniteLossError, UnusedParametersError
from lit_models.flops import flop_counter

__all__ = [
    "NonFiniteLossError",
    "UnusedParametersError",
    "Probe",
    "measured_flops",
    "parameters_without_gradient",
    "probe",
    "unused_parameters_message",
]


@dataclass
class Probe:
    """What one forward and backward of the first batch tells: the trainable parameters that get no gradient,
    and (when counted) the FLOPs of the forward and of forward + backward."""

    unused: list[str]
    forward_flops: int | None = None
    total_flops: int | None = None


def probe(module: nn.Module, loss_fn: Callable[[], torch.Tensor], count_flops: bool = False) -> Probe:
    """One forward and backward that leaves no trace: ``torch.autograd.grad`` accumulates nothing into
    ``.grad`` (so DDP's hooks stay quiet), and buffers such as BatchNorm statistics and the RNG state are
    restored afterwards, so the run that follows is the run that would have been. ``count_flops``: under
    ``FlopCounterMode`` (``lit_models.flops``)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
    devices = [d for d in {p.device for _, p in named} if d.type == "cuda"]
    counter = flop_counter() if count_flops else nullcontext()
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), counter:
        loss = loss_fn()
        forward = counter.get_total_flops() if count_flops else None
        grads = [None] * len(named)
        if named and loss.requires_grad:
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    with torch.no_grad():
        for n, b in module.named_buffers():
            b.copy_(buffers[n])
    unused = [n for (n, _), g in zip(named, grads, strict=True) if g is None]
    total = counter.get_total_flops() if count_flops else None
    return Probe(unused, forward, total)


def parameters_without_gradient(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> list[str]:
    """Names of trainable parameters that the loss does not depend on (one traceless ``probe``)."""
    return probe(module, loss_fn).unused


def measured_flops(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) of ``loss_fn()`` and its gradient for ``module``'s trainable
    parameters (one traceless ``probe``)."""
    result = probe(module, loss_fn, count_flops=True)
    return result.forward_flops, result.total_flops


def unused_parameters_message(names: list[str], total: int) -> str:
    shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
    return (
        f"{len(names)} of {total} trainable parameter tensors get no gradient from the loss: {shown}. "
        "The model computes with them but its output does not depend on them (like a Transformer whose "
        "encoder output is never read by the head). Fix the model's forward, or set "
        "--model.unused_parameters warn to train anyway."
    )


def state_dict_mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` would not load into ``module`` strictly (tensors of other shapes, missing, unexpected), in
    a few words; None when it loads."""
    own = module.state_dict()
    shapes = [f"{k} is {list(v.shape)} there, {list(own[k].shape)} here"
              for k, v in state.items() if k in own and v.shape != own[k].shape]  # fmt: skip
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    for what, found in (
        ("of another shape", shapes),
        ("missing", missing),
        ("not in this model", unexpected),
    ):
        if found:
            more = f", ... ({len(found) - 2} more)" if len(found) > 2 else ""
            parts.append(f"{len(found)} tensor(s) {what}: {'; '.join(found[:2])}{more}")
    return " / ".join(parts) or None
