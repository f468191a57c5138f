"""``LanguageModelTask``: next-token prediction for any net that maps ``(x, lengths)`` token ids to per-position
logits ``(B, T, vocab)``: the GPT decoder, or a recurrent net with ``pooling: none``.

Validation and test report the loss in nats per token, perplexity and bits per character, summed over every
predicted token of the split (torchmetrics states, summed across processes) rather than averaged per batch,
so a short last window weighs what its tokens weigh.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric

from lit_models.task import Task


class SummedStates(Metric):
    """Float64 sums, one per name of ``states``, summed across processes; ``update`` adds values in that order."""

    full_state_update = False
    states: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self.states:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, *values: torch.Tensor) -> None:
        for name, value in zip(self.states, values, strict=True):
            setattr(self, name, getattr(self, name) + value.double())


class LanguageModelMetrics(SummedStates):
    """Summed negative log-likelihood (nats), predicted tokens and their characters -> loss, perplexity, bpc."""

    states = ("nats", "tokens", "chars")

    def compute(self) -> dict[str, torch.Tensor]:
        self.scored = float(self.tokens)  # every process's sum (compute runs synced), for _log_epoch
        loss = self.nats / self.tokens  # no token scored: NaN, never a loss of 0 (a perfect score)
        bpc = self.nats / (math.log(2) * self.chars.clamp(min=1)) + loss * 0  # NaN with the loss
        return {"loss": loss.float(), "ppl": loss.exp().float(), "bpc": bpc.float()}


class LanguageModelTask(Task):
    counts_tokens = True  # the comparison reports its throughput in tokens/s
    # what a user runs in place of ``predict``, which a language model has no step for (said before a run starts)
    instead_of_predict = "generate (text that follows a prompt) or test (the loss and perplexity on a split)"
    # per-position logits from ``net(x, lengths)`` (the masked LM reads the encoder's token states instead)
    reads_the_nets_output = True

    def __init__(
        self, net: nn.Module, task: str = "language_modeling", num_outputs: int | None = None, **kwargs
    ):
        """
        Args:
            net: The architecture: ``forward(x, lengths=None) -> (B, T, vocab)`` next-token logits.
            task: What the data is for; linked from the data, and it must be ``language_modeling``.
            num_outputs: The vocabulary size; linked from the data (the nets get it as their own size).
        """
        if task != "language_modeling":
            raise ValueError(
                f"model: {type(self).__name__} needs language-model data (datamodules.lm.LanguageModelDataModule), "
                f"the data's task is {task!r}"
            )
        pooling = getattr(net, "pooling", "none")
        if pooling != "none" and self.reads_the_nets_output:
            raise ValueError(
                f"model.net: {type(net).__name__} with pooling {pooling!r} gives one output per sequence; a language "
                "model predicts at every position: --model.net.init_args.pooling none"
            )
        super().__init__(net, **kwargs)
        self.val_metrics = LanguageModelMetrics()
        self.test_metrics = LanguageModelMetrics()

    @staticmethod
    def batch_size(batch: dict) -> int:
        return len(batch["x"])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths)

    def _summed_nll(self, x: torch.Tensor, lengths: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy (nats) of the net's logits over the real targets (``-100``: none)."""
        logits = self.net(x, lengths)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100, reduction="sum")

    def compile_net(self) -> None:
        """``compile: true`` compiles the net and the loss as one graph: the fp32 cross-entropy over the whole
        vocabulary is fused into the head's output instead of written out as fp32 logits and read back (on an H100,
        gpt2-small in bf16: 1.50x the tokens/s of the net compiled alone; bench/gpu_lm.py). The net's parameter
        names and checkpoints are unchanged."""
        self._compiled["nll"] = torch.compile(self._summed_nll)

    def _nats(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the batch's real targets and their count."""
        y = batch["y"]
        nats = self._compiled.get("nll", self._summed_nll)(batch["x"], batch.get("lengths"), y)
        return nats, (y != -100).sum()

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, None]:
        nats, tokens = self._nats(batch)
        return nats / tokens.clamp(min=1), None  # the logits stay inside the (compiled) loss

    def _evaluate(self, batch: dict, metrics: LanguageModelMetrics) -> None:
        nats, tokens = self._nats(batch)
        metrics.update(nats.detach(), tokens, batch["chars"].sum())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _log_epoch(self, metrics: LanguageModelMetrics, prefix: str) -> None:
        computed = metrics.compute()  # every process takes part (a sum across them)
        # a NaN loss that says so, not a diverged model: the same on every process (the synced count)
        self.nothing_scored = metrics.scored == 0
        if self.nothing_scored and not self.trainer.sanity_checking:
            split = "validation" if prefix == "val" else prefix
            rank_zero_warn(f"{prefix}: the {split} split scored no token ({self.no_tokens_scored}), so its loss "
                           "and perplexity are NaN, not a score: give it more text")  # fmt: skip
        self.log_computed({f"{prefix}/{k}": v for k, v in computed.items()}, prog_bar=True)
        metrics.reset()

    # why a split may score no token, for the warning above
    no_tokens_scored = "it holds no window of two tokens"

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")
        super().on_test_epoch_end()
