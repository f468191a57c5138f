"""Sanity checks run before training."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from archbench.errors import NonFiniteLossError, UnusedParametersError

__all__ = [
    "NonFiniteLossError",
    "UnusedParametersError",
    "parameters_without_gradient",
    "unused_parameters_message",
]


def parameters_without_gradient(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> list[str]:
    """Names of trainable parameters that the loss does not depend on.

    One forward and backward with ``torch.autograd.grad``: nothing is accumulated into ``.grad`` (so DDP's
    hooks stay quiet), buffers such as BatchNorm statistics and the RNG state are restored afterwards.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not named:
        return []
    buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
    devices = [d for d in {p.device for _, p in named} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        loss = loss_fn()
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    with torch.no_grad():
        for n, b in module.named_buffers():
            b.copy_(buffers[n])
    return [n for (n, _), g in zip(named, grads, strict=True) if g is None]


def unused_parameters_message(names: list[str], total: int) -> str:
    shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
    return (
        f"{len(names)} of {total} trainable parameter tensors get no gradient from the loss: {shown}. "
        "The model computes with them but its output does not depend on them (like a Transformer whose "
        "encoder output is never read by the head). Fix the model's forward, or set "
        "--model.unused_parameters warn to train anyway."
    )
