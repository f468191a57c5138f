"""``Task``: what every task LightningModule shares, so that a task file holds only its loss and metrics.

Shared here: the architecture as a constructor argument (any ``nn.Module``), the optimizer and learning-rate
schedule as LightningCLI callables over the task's parameter groups, the pre-training check for parameters
that get no gradient, the non-finite-loss guard, parameter counts, ``torch.compile``, and the backbone a
fine-tuning callback freezes. A task subclass implements ``compute_loss(batch) -> (loss, outputs)``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lit_models.checks import (
    NonFiniteLossError,
    UnusedParametersError,
    parameters_without_gradient,
    unused_parameters_message,
)
from lit_models.optim import WarmupCosineLR, parameter_groups


class Task(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = WarmupCosineLR,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        layer_decay: float | None = None,
        unused_parameters: Literal["error", "warn", "ignore"] = "error",
        nonfinite_loss: Literal["stop", "skip"] = "stop",
        compile: bool = False,
    ):
        """
        Args:
            net: The architecture, ``forward(x, lengths=None) -> (B, outputs)``.
            optimizer: Any torch optimizer, e.g. ``--model.optimizer torch.optim.SGD --model.optimizer.momentum
                0.9``. Default AdamW (lr 1e-3, weight decay 0.01). Its ``weight_decay`` applies to weight matrices
                only, never to biases, norms or position embeddings.
            lr_scheduler: Any torch schedule (``torch.optim.lr_scheduler.StepLR``, ...), or null for a constant
                rate. Default: linear warm-up over 5% of the steps, then cosine decay to zero. A schedule with a
                ``total_steps`` argument (``WarmupCosineLR``, ``OneCycleLR``) gets the run's optimizer steps.
            lr_scheduler_interval: Step the schedule after every optimizer ``step`` or every ``epoch`` (StepLR's
                usual unit).
            layer_decay: Layer-wise learning-rate decay for fine-tuning (e.g. 0.75): the head trains at the full
                rate, each layer below at ``layer_decay`` times the one above (timm's parameter groups; for timm
                models and our ViT and ResNet).
            unused_parameters: At the first training step, one extra forward and backward finds trainable
                parameters that get no gradient: ``error`` stops the run, ``warn`` warns, ``ignore`` skips it.
            nonfinite_loss: A NaN or infinite training loss: ``stop`` ends the run before that step's update,
                naming the step and batch; ``skip`` drops the batch (no update) and counts it in
                ``train/skipped_batches``. Under DDP the decision is taken together, so processes never diverge.
            compile: ``torch.compile`` the net (``nn.Module.compile``: parameter names and checkpoints unchanged).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.net = net
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.skipped_batches = 0
        self._checked_parameters = False

    # --- what a task provides ---------------------------------------------------------------------------

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean loss and the net's outputs."""
        raise NotImplementedError

    @staticmethod
    def batch_size(batch: dict) -> int:
        return len(batch["y"])

    # --- shared -----------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.hparams.compile:
            self.net.compile()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if not self._checked_parameters:
            self._check_parameters(batch)
        loss, _ = self.compute_loss(batch)
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # any process's bad loss stops (or skips) every process's step
            finite = not self.trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not finite:
            return self._nonfinite(loss, batch_idx)
        if self._logs_this_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=self.batch_size(batch))
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the loggers write this step's values (Lightning's rule: every ``log_every_n_steps``-th
        optimizer step). ``self.log`` costs about 1 ms a call on the CPU, 1-2% of a small model's step
        (bench/trainer_overhead.py), and a value logged on the other steps is never written; the progress bar
        shows the last written loss. (Batches skipped as non-finite do not advance ``global_step``, so after one
        the loss is written a step later than the other metrics.)"""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _nonfinite(self, loss: torch.Tensor, batch_idx: int) -> None:
        where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.hparams.nonfinite_loss == "stop":
            value = f"is {loss.item()}" if not torch.isfinite(loss) else "is not finite on another process"
            raise NonFiniteLossError(
                f"training loss {value} at {where}; stopped before the update (model.nonfinite_loss=skip "
                "drops such batches instead; a lower learning rate or trainer.gradient_clip_val may help)"
            )
        self.skipped_batches += 1
        self.log("train/skipped_batches", float(self.skipped_batches), reduce_fx="max")
        return None

    def _check_parameters(self, batch: dict) -> None:
        """Trainable parameters that get no gradient from the loss, on the first batch of this fit."""
        self._checked_parameters = True
        if self.hparams.unused_parameters == "ignore":
            return
        names = parameters_without_gradient(self, lambda: self.compute_loss(batch)[0])
        if not names:
            return
        message = unused_parameters_message(names, sum(1 for p in self.parameters() if p.requires_grad))
        if self.hparams.unused_parameters == "error":
            raise UnusedParametersError(message)
        warnings.warn(message, stacklevel=1)

    def on_fit_start(self) -> None:
        self._checked_parameters = False
        for logger in self.loggers:
            logger.log_hyperparams(self.parameter_counts())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:  # never a NaN model as "best" or "last"
            raise NonFiniteLossError(
                f"not saving a checkpoint whose weights are not finite: {', '.join(bad[:3])}"
            )

    def parameter_counts(self) -> dict[str, int]:
        return {
            "params": sum(p.numel() for p in self.net.parameters()),
            "params_trainable": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
        }

    def configure_optimizers(self):
        groups = parameter_groups(self.net, self.hparams.layer_decay)
        covered = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in covered]
        if rest:  # a task's own parameters (outside the net): decayed like the net's weights
            groups.append({"params": rest})
        optimizer = self.optimizer(groups)
        for group in optimizer.param_groups:  # before the schedule reads the rates
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.lr_scheduler is None:
            return optimizer
        try:
            scheduler = self.lr_scheduler(optimizer, total_steps=max(1, int(self._stepping_batches())))
        except TypeError as err:
            if "total_steps" not in str(err):
                raise
            scheduler = self.lr_scheduler(optimizer)  # a schedule that does not need the run's length
        config = {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.update(monitor="val/loss", interval="epoch")
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _stepping_batches(self) -> float:
        """``trainer.estimated_stepping_batches`` without its side effect. Asked before a checkpoint is restored,
        it builds the training loader early, and Lightning then never gives the loader its saved position (a
        mid-epoch resume would restart the epoch's data order; Lightning issue #20550). The early loader is
        dropped (a private attribute: no public way exists) and Lightning builds it again after the restore."""
        fit_loop = self.trainer.fit_loop
        built_before = fit_loop._combined_loader is not None
        total = self.trainer.estimated_stepping_batches
        if not built_before and fit_loop._combined_loader is not None:
            fit_loop._combined_loader.reset()
            fit_loop._combined_loader = None
        return total

    @property
    def backbone(self) -> nn.Module:
        """Every part of the net but its head, for fine-tuning callbacks (Lightning's ``BackboneFinetuning``
        freezes it, then unfreezes it with its own learning rate)."""
        if hasattr(self.net, "backbone_modules"):
            return nn.ModuleList(self.net.backbone_modules())
        head = next((getattr(self.net, n) for n in ("head", "fc") if hasattr(self.net, n)), None)
        if head is None:
            raise AttributeError(
                f"{type(self.net).__name__} has no head (head or fc) to tell from its backbone"
            )
        return nn.ModuleList(m for m in self.net.children() if m is not head)
