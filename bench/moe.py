"""Mixture of Experts cost: the MoE feed-forward (8 experts, top-2, dropless) vs a dense feed-forward with the
same active parameters (each token runs through 2 experts of hidden width h, the dense one has width 2h),
forward + backward on the same tokens; and our sorted dispatch vs a naive dispatch that loops over the experts
with a boolean mask each (``torch.where`` per expert, as most first implementations do).

Target: MoE / dense time ratio <= 1.5 on the CPU. Medians of alternating repeats. ``--device cuda`` times it on a
GPU (in fp32; on a CPU-only machine it says so and exits 0). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

from lit_models.moe import MoE, MoEOptions

D, HIDDEN, EXPERTS, TOP_K, TOKENS, REPEATS = 256, 512, 8, 2, 8192, 7


def naive(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The same layer, dispatched one expert at a time by masking."""
    logits = moe.router(x)
    top, chosen = logits.topk(moe.options.top_k, dim=-1)
    gates = top.softmax(-1)
    out = torch.zeros_like(x)
    for e in range(moe.options.experts):
        token, slot = torch.where(chosen == e)
        if len(token):
            out.index_add_(0, token, moe.expert(e, x[token]) * gates[token, slot, None])
    return out


def timed(fn, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_()
    sync = torch.cuda.synchronize if x.is_cuda else lambda: None
    sync()
    start = time.perf_counter()
    fn(x).square().mean().backward()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    device = torch.device(parser.parse_args().device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            json.dumps({"bench": "moe", "skipped": "--device cuda needs a CUDA GPU; this machine has none"})
        )
        sys.exit(0)
    torch.manual_seed(0)
    moe = MoE(D, HIDDEN, MoEOptions(experts=EXPERTS, top_k=TOP_K, expert="gelu"))
    dense = nn.Sequential(
        nn.Linear(D, TOP_K * HIDDEN, bias=False), nn.GELU(), nn.Linear(TOP_K * HIDDEN, D, bias=False)
    )
    active_moe = sum(p.numel() for p in moe.parameters()) - moe.inactive_parameters()
    active_dense = sum(p.numel() for p in dense.parameters())
    moe, dense = moe.to(device), dense.to(device)
    x = torch.randn(TOKENS, D, device=device)
    with torch.no_grad():
        same = torch.allclose(naive(moe, x), moe(x), atol=1e-5)
    runs = {"moe": lambda t: moe(t), "dense": dense, "naive": lambda t: naive(moe, t)}
    for fn in runs.values():
        timed(fn, x)  # warm-up
    times = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, fn in runs.items():
            times[name].append(timed(fn, x))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "bench": "moe", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "tokens": TOKENS, "d_model": D, "experts": EXPERTS,
        "top_k": TOP_K, "expert_hidden": HIDDEN, "active_params_moe": active_moe,
        "active_params_dense": active_dense, "dropless": moe.dropped == 0, "naive_same_output": same,
        "tokens_per_s_moe": round(TOKENS / median["moe"]), "tokens_per_s_dense": round(TOKENS / median["dense"]),
        "tokens_per_s_naive": round(TOKENS / median["naive"]),
        "moe_over_dense_time": round(median["moe"] / median["dense"], 3), "target": 1.5,
        "naive_over_moe_time": round(median["naive"] / median["moe"], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
