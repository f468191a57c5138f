"""Adaptive computation's overhead: a Universal Transformer with ACT (one block, up to 8 steps) vs a fixed-depth
stack of as many blocks as the mean number of steps ACT took, forward + backward on the same batch.

ACT's halting is set so that positions take different numbers of steps; every position still goes through the
block until the last one halts (positions are batched), so the ratio "time per mean step" shows what the
bookkeeping and the unused steps of halted positions cost. Prints one JSON line.
"""

from __future__ import annotations

import json
import math
import statistics
import time

import torch
from torch import nn

from lit_models.transformer import TransformerNet

BATCH, LENGTH, D, MAX_STEPS, REPEATS = 32, 64, 128, 8, 7


def timed(net: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    net(x).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    common = dict(
        in_channels=16, num_outputs=1, seq_len=LENGTH, d_model=D, nhead=4, dim_feedforward=4 * D, dropout=0.0
    )
    act = TransformerNet(**common, num_layers=MAX_STEPS, universal={"act": True, "halt_bias": -1.5})
    nn.init.normal_(act.depth.halt.weight, std=0.3)  # positions halt at different steps
    x = torch.randn(BATCH, LENGTH, 16)
    with torch.no_grad():
        act(x)
    mean_steps = float(act.depth.steps.mean())
    ran_steps = int(act.depth.steps.max())
    fixed = TransformerNet(**common, num_layers=max(1, round(mean_steps)))
    for net in (act, fixed):
        timed(net, x)
    times = {"act": [], "fixed": []}
    for _ in range(REPEATS):
        times["act"].append(timed(act, x))
        times["fixed"].append(timed(fixed, x))
    t_act, t_fixed = statistics.median(times["act"]), statistics.median(times["fixed"])
    per_step_act, per_step_fixed = t_act / mean_steps, t_fixed / max(1, round(mean_steps))
    print(json.dumps({
        "bench": "act", "threads": torch.get_num_threads(), "batch": BATCH, "length": LENGTH, "d_model": D,
        "max_steps": MAX_STEPS, "mean_steps": round(mean_steps, 2), "steps_run": ran_steps,
        "fixed_depth": max(1, round(mean_steps)), "seconds_act": round(t_act, 4), "seconds_fixed": round(t_fixed, 4),
        "time_per_mean_step_ratio": round(per_step_act / per_step_fixed, 3),
        "ideal_ratio_if_batched": round(ran_steps / mean_steps, 3) if not math.isnan(mean_steps) else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
