"""FLOPs measured, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` counts the matmuls,
convolutions and attention of one real forward and backward (2 FLOPs per multiply-add; element-wise work is
not counted, as in the usual 6N estimate).

torch's counter knows the CUDA attention kernels but not the CPU's fused one
(``_scaled_dot_product_flash_attention_for_cpu``, which SDPA takes on the CPU), so its formulas are given for
that kernel too. Like torch's, they count the full score matrix: a causal or sparse mask does not lower them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


aten = torch.ops.aten
CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)


def measured_flops(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) of ``loss_fn()`` and its gradient for ``module``'s trainable
    parameters. Nothing is accumulated into ``.grad``; buffers (BatchNorm statistics) and the RNG state are
    restored, so the run that follows is the run that would have been."""
    params = [p for p in module.parameters() if p.requires_grad]
    buffers = [b.detach().clone() for b in module.buffers()]
    devices = [d for d in {p.device for p in params} if d.type == "cuda"]
    counter = flop_counter()
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), counter:
        loss = loss_fn()
        forward = counter.get_total_flops()
        if params and loss.requires_grad:
            torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for b, saved in zip(module.buffers(), buffers, strict=True):
            b.copy_(saved)
    return int(forward), int(counter.get_total_flops())
