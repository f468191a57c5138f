"""The Universal Transformer's depth (Dehghani et al. 2018): one block, its weights shared, applied up to
``max_steps`` times with a (learned) step embedding added before each application; with adaptive computation time
(ACT, Graves 2016) every position decides when to stop.

ACT, per position: at step t a halting unit gives p_t = sigmoid(w . h_t + b). The position runs while the
sum of its p stays at or below ``threshold``; at the step where it would pass it (or at the last step) it halts
with the remainder R = 1 - (the sum so far). Its output is the weighted sum of the states it reached, weights
p_t and R at the last step (they sum to 1). The ponder cost tau * (N + R), N the steps taken, averaged over
real positions, is added to the loss: it is differentiable through R. A halted position's state keeps being
transformed (others may still attend to it), as in the Universal Transformer; its output no longer changes.
In a decoder a position's halting reads only its own state, which causal attention built from earlier
positions, so later tokens never change how long an earlier one ponders.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchmetrics import Metric

from archbench.errors import NET, ConfigError, refuse_nulls


@dataclass
class UniversalOptions:
    """One block applied ``num_layers`` (``n_layer``) times, weights shared.

    Args:
        act: Adaptive computation time: each position halts on its own (else every position takes every step).
        ponder_cost: tau, the weight of the ponder cost N + R in the loss.
        threshold: A position halts once its summed halting probability would pass this (Graves' 1 - epsilon).
        halt_bias: The halting unit's initial bias (1.0: p about 0.73, two or three steps at first).
    """

    act: bool = True
    ponder_cost: float = 0.01
    threshold: float = 0.99
    halt_bias: float = 1.0

    def __post_init__(self):
        refuse_nulls(self, "universal")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"{NET}.universal.threshold: {self.threshold} is not between 0 and 1")
        if self.ponder_cost < 0:
            raise ConfigError(f"{NET}.universal.ponder_cost: {self.ponder_cost} is negative")
        defaults = UniversalOptions.__dataclass_fields__
        given = [f"{k}: {getattr(self, k)}" for k in ("ponder_cost", "threshold", "halt_bias")
                 if getattr(self, k) != defaults[k].default]  # fmt: skip
        if not self.act and given:  # said, as a window given to full attention is (a sweep over both goes on)
            warnings.warn(
                f"{NET}.universal: {', '.join(given)}, but act is false (every position takes every step, no "
                f"halting unit): ignored (set act: true to use {'them' if len(given) > 1 else 'it'})",
                stacklevel=2,
            )


def universal_options(value: UniversalOptions | dict | None) -> UniversalOptions | None:
    return UniversalOptions(**value) if isinstance(value, dict) else value


class AdaptiveDepth(nn.Module):
    """The shared block's recurrence in depth. ``forward(h, step, mask)`` with ``step(h, t) -> h`` applying the
    block (the model passes its attention options and the step's KV cache in it)."""

    def __init__(self, d_model: int, max_steps: int, options: UniversalOptions):
        super().__init__()
        self.max_steps, self.options = max_steps, options
        # A learned step embedding from zero: a sinusoidal one (entries up to 1) drowned a GPT's token embeddings
        # (std 0.02), and that GPT learned no more than character frequencies (4.44 bits per character).
        self.time = nn.Parameter(torch.zeros(max_steps, d_model))
        self.halt = nn.Linear(d_model, 1) if options.act else None
        self.reset_parameters()
        self.aux_losses: dict[str, torch.Tensor] = {}  # summed since ``reset_statistics``
        self.steps: torch.Tensor | None = None  # (B, L) steps each position took in the last forward
        self.mask: torch.Tensor | None = None

    def reset_statistics(self) -> None:
        self.aux_losses, self.steps, self.mask = {}, None, None

    def reset_parameters(self) -> None:
        """The step embedding starts at zero and the halting unit from its bias alone (a model's own
        initialisation must call this after)."""
        nn.init.zeros_(self.time)
        if self.halt is not None:
            nn.init.zeros_(self.halt.weight)
            nn.init.constant_(self.halt.bias, self.options.halt_bias)

    def forward(
        self,
        h: torch.Tensor,
        step: Callable[[torch.Tensor, int], torch.Tensor],
        mask: torch.Tensor | None = None,
        every_step: bool = False,
    ) -> torch.Tensor:
        """h: (B, L, D); mask: (B, L) True at real positions. ``every_step``: run all ``max_steps`` even after
        every position halted (a KV cache needs every step's keys of every position)."""
        if self.halt is None:
            for t in range(self.max_steps):
                h = step(h + self.time[t], t)
            self.steps, self.mask = None, mask
            return h
        B, L, _ = h.shape
        halting = h.new_zeros(B, L)  # summed p of the steps taken (while running)
        remainders = h.new_zeros(B, L)
        steps = h.new_zeros(B, L)
        halted = torch.zeros(B, L, dtype=torch.bool, device=h.device)
        out = torch.zeros_like(h)
        threshold = self.options.threshold
        for t in range(self.max_steps):
            h = h + self.time[t]
            p = torch.sigmoid(self.halt(h)).squeeze(-1).to(h.dtype)
            running = ~halted
            stop = running & ((halting + p > threshold) | (t == self.max_steps - 1))
            go_on = running & ~stop
            remainder = torch.where(stop, 1 - halting, 0.0)
            weight = torch.where(go_on, p, remainder)
            remainders = remainders + remainder
            halting = halting + torch.where(go_on, p, 0.0)
            steps = steps + running.to(h.dtype)
            h = step(h, t)
            out = out + weight.unsqueeze(-1) * h
            halted = halted | stop
            if not every_step and bool(halted.all()):
                break
        self.steps, self.mask = steps.detach(), mask
        if self.training and torch.is_grad_enabled():
            ponder = steps + remainders
            ponder = ponder[mask].mean() if mask is not None else ponder.mean()
            ponder = self.options.ponder_cost * ponder
            self.aux_losses["ponder"] = (
                self.aux_losses["ponder"] + ponder if "ponder" in self.aux_losses else ponder
            )
        return out


class PonderSteps(Metric):
    """Steps per real position of every ACT module, summed over batches and processes -> the mean, and the
    share of positions that took 1, 2, ... ``max_steps`` steps (the distribution). Given each example's
    ``difficulty`` (an integer the data defines, such as the non-zero entries of a parity sequence), also the
    mean steps of the examples of each difficulty (``steps_at_difficulty_<d>``, for d up to 256)."""

    full_state_update = False
    MAX_DIFFICULTY = 256

    def __init__(self, max_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state("histogram", torch.zeros(max_steps, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("difficulty_steps", "difficulty_examples"):
            self.add_state(
                name, torch.zeros(self.MAX_DIFFICULTY + 1, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, layers: list[AdaptiveDepth], difficulty: torch.Tensor | None = None) -> None:
        per_example = []
        for layer in layers:
            if layer.steps is None:
                continue
            mask = layer.mask if layer.mask is not None else torch.ones_like(layer.steps, dtype=torch.bool)
            counts = torch.bincount(layer.steps[mask].long() - 1, minlength=len(self.histogram))
            self.histogram += counts[: len(self.histogram)].to(self.histogram)
            per_example.append((layer.steps * mask).sum(-1) / mask.sum(-1).clamp(min=1))
        if difficulty is not None and per_example and per_example[0].shape == difficulty.shape:
            steps = torch.stack(per_example).mean(0).to(self.difficulty_steps)
            index = difficulty.long().clamp(0, self.MAX_DIFFICULTY)
            self.difficulty_steps.index_add_(0, index, steps)
            self.difficulty_examples.index_add_(0, index, torch.ones_like(steps))

    def compute(self) -> dict[str, torch.Tensor]:
        share = self.histogram / self.histogram.sum().clamp(min=1)
        values = {"steps": (share * torch.arange(1, len(share) + 1, dtype=share.dtype)).sum()}
        values.update({f"share_{k + 1}_steps": share[k] for k in range(len(share))})
        for d in self.difficulty_examples.nonzero().flatten().tolist():
            values[f"steps_at_difficulty_{d}"] = self.difficulty_steps[d] / self.difficulty_examples[d]
        return {k: v.float() for k, v in values.items()}
