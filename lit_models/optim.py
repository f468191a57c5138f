"""What the tasks hand to the optimizer: parameter groups (weight decay on weight matrices only, layer-wise
learning-rate decay through timm's groups), and the default warm-up + cosine schedule.

The optimizer and the schedule themselves are LightningCLI callables (``--model.optimizer torch.optim.SGD``,
``--model.lr_scheduler torch.optim.lr_scheduler.StepLR``): any torch class works and keeps these groups.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over ``warmup_fraction`` of the run, then cosine (or no) decay to ``min_factor`` times the
    peak rate, stepped every optimizer step.

    Unlike torch's ``LambdaLR``, a parameter group added during training (a fine-tuning callback unfreezing a
    backbone) keeps the rate it joins with and follows the schedule from there; ``LambdaLR`` fails on it.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_fraction: float = 0.05,
        decay: Literal["cosine", "constant"] = "cosine",
        min_factor: float = 0.0,
        total_steps: int | None = None,
    ):
        """
        Args:
            optimizer: Set by the task.
            warmup_fraction: Share of the training steps spent in linear warm-up from zero.
            decay: ``cosine`` to ``min_factor`` x the peak rate at the last step, or ``constant`` after warm-up.
            min_factor: Final rate as a fraction of the peak (cosine only).
            total_steps: Optimizer steps of the whole run; the task passes the trainer's count.
        """
        if total_steps is None or total_steps < 1:
            raise ValueError(
                f"WarmupCosineLR needs the run's total_steps (a positive integer), got {total_steps}"
            )
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"WarmupCosineLR: warmup_fraction {warmup_fraction} is outside [0, 1)")
        self.warmup = int(warmup_fraction * total_steps)
        self.total_steps, self.decay, self.min_factor = total_steps, decay, min_factor
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def load_state_dict(self, state_dict: dict) -> None:
        """A resumed run whose trainer plans another number of steps than the checkpoint's run (``fit --ckpt_path
        last --trainer.max_steps`` raised to train on): the schedule stretches to the new total from the step it
        is at, and says so, instead of training on at the old schedule's end (a rate of 0 after a cosine)."""
        planned = self.total_steps
        super().load_state_dict(state_dict)
        if planned != self.total_steps and self.decay == "cosine":
            before, old = self.factor(self.last_epoch), self.total_steps
            self.total_steps = planned  # the warm-up stays the checkpoint's: its steps are behind
            for group in self.optimizer.param_groups:  # restored before this, at the old schedule's rate
                group["lr"] = group["initial_lr"] * self.factor(self.last_epoch)
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
            if rank_zero_only.rank != 0:  # said once, not once per DDP process (trial 32)
                return
            warnings.warn(
                f"learning-rate schedule: the checkpoint's run planned {old} steps, this one {planned}: the "
                f"cosine now ends at step {planned}, the rate at step {self.last_epoch} goes from "
                f"{before:.3g} to {self.factor(self.last_epoch):.3g} x its peak",
                stacklevel=1,  # this file: a Lightning frame would make it look like Lightning's message
            )

    def get_lr(self) -> list[float]:
        now = self.factor(self.last_epoch)
        previous = self.factor(max(self.last_epoch - 1, 0))
        for group in self.optimizer.param_groups:
            if "initial_lr" not in group:  # joined since the last step, at group["lr"] under `previous`
                group["initial_lr"] = group["lr"] / max(previous, 1e-12)
        return [group["initial_lr"] * now for group in self.optimizer.param_groups]


def parameter_groups(net: nn.Module, layer_decay: float | None = None) -> list[dict]:
    """Groups for any optimizer: weight decay (the optimizer's own ``weight_decay``) on weight matrices only,
    none on biases, norms and what the net lists in ``no_weight_decay()`` (timm's convention: position
    embeddings, class tokens); with ``layer_decay``, timm's layer-wise groups (``group_matcher()``, which timm
    models and ours have): each group's ``lr_scale`` is ``layer_decay ** (layers above it)``.
    """
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    skip = set(net.no_weight_decay()) if hasattr(net, "no_weight_decay") else set()
    skip |= {"*moe.b1", "*moe.b2"}  # a Mixture of Experts' biases: 2-D (one row per expert), still biases
    skip |= {"*depth.time"}  # a Universal Transformer's step embedding, like position embeddings
    marker = 1.0  # timm needs a number; the optimizer's own weight_decay applies where it stands
    if layer_decay is None:
        groups = param_groups_weight_decay(net, weight_decay=marker, no_weight_decay_list=skip)
    else:
        if not hasattr(net, "group_matcher"):
            raise ValueError(
                f"model.layer_decay: {type(net).__name__} does not say which layer each parameter is in "
                "(group_matcher(), as timm models and our ViT/ResNet have)"
            )
        groups = param_groups_layer_decay(
            net, weight_decay=marker, no_weight_decay_list=skip, layer_decay=layer_decay
        )
    for group in groups:
        if group["weight_decay"]:
            del group["weight_decay"]
    return [g for g in groups if g["params"]]


def prefixed_matcher(matcher: dict, prefix: str) -> dict:
    """A timm ``group_matcher()`` for a model held as ``prefix`` + its names (``model.`` inside a wrapper)."""
    escaped = re.escape(prefix)

    def fix(pattern: str) -> str:
        # timm matches each name from its start: the prefix goes before the whole pattern, alternatives and
        # all (``^cls_token|pos_embed|patch_embed`` names three parameters at the top of the model)
        unanchored = re.sub(r"(^|\||\()\^", r"\1", pattern)  # ^a|^b -> a|b, (^a) -> (a)
        return f"^{escaped}(?:{unanchored})"

    out = {}
    for key, value in matcher.items():
        if isinstance(value, str):
            out[key] = fix(value)
        else:
            out[key] = [(fix(p), suffix) for p, suffix in value]
    return out
