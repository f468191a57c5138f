"""A Mixture-of-Experts feed-forward (Shazeer et al. 2017; Switch Transformer, Fedus et al. 2021; Mixtral):
a router scores every token against ``experts`` feed-forward networks, the token goes to its ``top_k`` best,
and their outputs are summed with the softmax of the k selected scores as weights (with ``top_k`` 1, the
selected expert's probability under the softmax over all experts, as the Switch Transformer: a softmax over
one score would be a constant 1, and the router would learn nothing from the task's loss).

Dispatch sorts the (token, expert) assignments by expert, so each expert runs one matmul pair over all of its
tokens (a loop over the experts, never over tokens). Dropless by default; with ``capacity_factor`` each expert
takes at most ``ceil(capacity_factor * tokens * k / experts)`` assignments, earlier tokens first, and the
dropped ones count in ``dropped`` (the residual stream carries such a token past the layer unchanged).

Training losses, in ``aux_losses`` after a training forward (the task adds them to its loss and logs them):
``moe_balance``, Switch's load-balancing loss ``alpha * E * sum_e f_e P_e`` (f_e: share of the assignments
that went to expert e, P_e: mean router probability of e; ``alpha`` at a perfectly even router, whatever E
and k are), and ``moe_z``, the router z-loss of ST-MoE (Zoph et al. 2022), the mean squared log-sum-exp of
the router logits (weight 0 by default: off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from archbench.errors import NET, ConfigError, refuse_nulls


@dataclass
class MoEOptions:
    """A Mixture-of-Experts feed-forward in place of each block's MLP.

    Args:
        experts: Expert feed-forward networks per layer.
        top_k: Experts each token goes to.
        expert: ``swiglu`` experts (a gate and an up projection, as Mixtral) or ``gelu`` MLPs.
        hidden: Each expert's hidden width. Empty or 0: the block's ``dim_feedforward`` (``intermediate_size``).
        balance: Weight alpha of the load-balancing loss (Switch Transformer's 0.01); 0 leaves it out.
        z_loss: Weight of the router z-loss (ST-MoE uses 1e-3); 0 leaves it out.
        capacity_factor: Empty or 0: dropless. Else each expert takes at most this factor times an even share.
            (0 is what the command line can give: jsonargparse 4.53 reads a ``null`` given there for an option
            inside ``moe`` as the text 'None'.)
    """

    experts: int = 8
    top_k: int = 2
    expert: Literal["swiglu", "gelu"] = "swiglu"
    hidden: int | None = None
    balance: float = 0.01
    z_loss: float = 0.0
    capacity_factor: float | None = None

    def __post_init__(self):
        refuse_nulls(self, "moe")
        # 0: the default (empty), which a command line cannot give inside a nested option (the docstring)
        self.hidden = self.hidden or None
        self.capacity_factor = self.capacity_factor or None
        if self.experts < 1:
            raise ConfigError(f"{NET}.moe.experts: {self.experts} is below 1")
        if not 1 <= self.top_k <= self.experts:
            raise ConfigError(
                f"{NET}.moe.top_k: {self.top_k} is not between 1 and moe.experts ({self.experts})"
            )
        if self.expert not in ("swiglu", "gelu"):
            raise ConfigError(f"{NET}.moe.expert: {self.expert!r} is not an expert kind (swiglu or gelu)")
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(
                f"{NET}.moe.hidden: {self.hidden} is not a positive width (or empty or 0: the block's)"
            )
        if self.balance < 0 or self.z_loss < 0:
            raise ConfigError(
                f"{NET}.moe: balance {self.balance} and z_loss {self.z_loss} must not be negative"
            )
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ConfigError(
                f"{NET}.moe.capacity_factor: {self.capacity_factor} is not positive (or empty or 0: dropless)"
            )


def moe_options(value: MoEOptions | dict | None) -> MoEOptions | None:
    """``MoEOptions`` from a config's mapping (what ``asdict`` of a model config gives back)."""
    return MoEOptions(**value) if isinstance(value, dict) else value


class MoE(nn.Module):
    def __init__(self, d_model: int, hidden: int, options: MoEOptions, bias: bool = False):
        super().__init__()
        self.options = options
        E, self.swiglu = options.experts, options.expert == "swiglu"
        inner = 2 * hidden if self.swiglu else hidden
        self.router = nn.Linear(d_model, E, bias=False)
        self.w1 = nn.Parameter(torch.empty(E, d_model, inner))  # x @ w1[e]: (n, inner)
        self.w2 = nn.Parameter(torch.empty(E, hidden, d_model))
        self.b1 = nn.Parameter(torch.zeros(E, inner)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(E, d_model)) if bias else None
        for w in (self.w1, self.w2):  # nn.Linear's default initialisation, per expert
            bound = 1 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
        # Since the last ``reset_statistics`` (the task calls it before each step and evaluation batch), summed
        # over every call: a Universal Transformer applies its block several times per forward.
        self.aux_losses: dict[str, torch.Tensor] = {}
        self.counts: torch.Tensor | None = None  # assignments per expert (E,)
        self.dropped = 0  # assignments over capacity

    def reset_statistics(self) -> None:
        self.aux_losses, self.counts, self.dropped = {}, None, 0

    def expert_parameters(self) -> int:
        return sum(p.numel() for p in (self.w1, self.w2, self.b1, self.b2) if p is not None)

    def inactive_parameters(self) -> int:
        """Expert parameters a token does not use: (experts - top_k) / experts of them."""
        o = self.options
        return self.expert_parameters() * (o.experts - o.top_k) // o.experts

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on tokens x (n, D) -> (n, D)."""
        h = x @ self.w1[e]
        if self.b1 is not None:
            h = h + self.b1[e]
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        out = h @ self.w2[e]
        return out + self.b2[e] if self.b2 is not None else out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (..., D); mask: (...) bool, True at real tokens (padding is not routed: it takes no capacity and
        no part in the losses and counts; its output is 0) -> (..., D)."""
        if mask is not None:
            out = x.new_zeros(x.shape)
            out[mask] = self._route(x[mask])
            return out
        return self._route(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def _route(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, D) tokens -> (N, D)."""
        o, shape = self.options, x.shape
        N, E, k = x.shape[0], o.experts, o.top_k
        logits = self.router(x)  # (N, E)
        probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(-1)  # at least float32
        top, chosen = probs.topk(k, dim=-1)  # (N, k); the softmax over the k logits, renormalised
        gates = (top if k == 1 else top / top.sum(-1, keepdim=True)).to(x.dtype)
        experts = chosen.flatten()  # assignment a = token * k + slot
        order = experts.argsort(stable=True)  # by expert, token order kept within one
        counts = torch.bincount(experts, minlength=E)
        kept = counts
        if o.capacity_factor is not None:
            capacity = math.ceil(o.capacity_factor * N * k / E)
            kept = counts.clamp(max=capacity)
            # rank of each sorted assignment within its expert; those at or past the capacity are dropped
            first = torch.cumsum(counts, 0) - counts
            rank = torch.arange(N * k, device=x.device) - first.repeat_interleave(counts)
            order = order[rank < capacity]
        tokens = order // k
        # Every expert runs, an idle one on no tokens: its weights stay in the graph with a zero gradient (DDP
        # and the unused-parameter check expect every parameter to get one).
        y = torch.cat([self.expert(e, chunk) for e, chunk in enumerate(x[tokens].split(kept.tolist()))])
        y = y * gates.flatten()[order, None]
        out = x.new_zeros(N, shape[-1]).index_add_(0, tokens, y.to(x.dtype))
        self.counts = counts.detach() if self.counts is None else self.counts + counts.detach()
        self.dropped += int(N * k - len(order))
        if self.training and torch.is_grad_enabled() and N:
            for name, value in self.losses(logits, counts, probs).items():
                self.aux_losses[name] = self.aux_losses[name] + value if name in self.aux_losses else value
        return out

    def losses(
        self, logits: torch.Tensor, counts: torch.Tensor, probs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The training losses from the router's logits, the assignments per expert and (if the caller has
        them) the router's softmax probabilities."""
        o = self.options
        share = counts.float() / counts.sum().clamp(min=1)  # f_e: share of the assignments
        if probs is None:
            probs = logits.float().softmax(-1)
        probability = probs.mean(0)  # P_e: mean router probability
        losses = {}
        if o.balance:
            losses["moe_balance"] = o.balance * o.experts * (share * probability).sum()
        if o.z_loss:
            losses["moe_z"] = o.z_loss * logits.float().logsumexp(-1).square().mean()
        return losses


class ExpertUsage(Metric):
    """Assignments per expert of every MoE layer, summed over batches and processes -> per layer: each
    expert's share of the assignments, the normalised entropy of those shares (1: even use, 0: one expert)
    and the share of assignments dropped over capacity."""

    full_state_update = False

    def __init__(self, layers: int, experts: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state("counts", torch.zeros(layers, experts, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("dropped", torch.zeros(layers, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, layers: list[MoE]) -> None:
        for i, layer in enumerate(layers):
            if layer.counts is not None:
                self.counts[i] += layer.counts.to(self.counts)
                self.dropped[i] += layer.dropped

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.counts.sum(-1, keepdim=True).clamp(min=1)
        share = self.counts / total
        entropy = -(share * share.clamp(min=1e-12).log()).sum(-1) / math.log(max(2, share.shape[-1]))
        if share.shape[-1] == 1:  # one expert takes every token: even use of what there is, not a collapse
            entropy = torch.ones_like(entropy)
        values = {}
        for i in range(share.shape[0]):
            values[f"layer{i}/entropy"] = entropy[i]
            values[f"layer{i}/dropped"] = self.dropped[i] / total[i, 0]
            for e in range(share.shape[1]):
                values[f"layer{i}/expert{e}"] = share[i, e]
        values["entropy"] = entropy.mean()
        return {k: v.float() for k, v in values.items()}
