"""``SequenceTask``: the LightningModule for sequence regression and classification.

It owns the loss, the metrics (torchmetrics, synchronised across devices), the optimizer and schedule,
and the pre-training gradient check. The architecture is any module with ``forward(x, lengths)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, R2Score, SpearmanCorrCoef

from lit_models.checks import UnusedParametersError, parameters_without_gradient, unused_parameters_message


class SelectiveAccuracy(Metric):
    """Predictions whose top class probability is at least ``threshold`` are answered, the rest are "unknown":
    ``coverage`` is the share answered, ``accuracy`` the accuracy on those (NaN when none is answered).
    """

    full_state_update = False

    def __init__(self, threshold: float, report: Literal["coverage", "accuracy"]):
        super().__init__()
        self.threshold, self.report = threshold, report
        self.add_state("answered", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("correct", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        confidence, predicted = logits.softmax(-1).max(-1)
        answered = confidence >= self.threshold
        self.answered += answered.sum()
        self.correct += (answered & (predicted == target)).sum()
        self.total += len(target)

    def compute(self) -> torch.Tensor:
        if self.report == "coverage":
            return self.answered / self.total
        return self.correct / self.answered if self.answered > 0 else torch.tensor(float("nan"))


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """``LambdaLR`` for every parameter group, including groups added during training (a fine-tuning callback
    unfreezing a backbone): a new group keeps the learning rate it joins with and follows the schedule from
    there. (``LambdaLR`` fails on a group it was not built with.)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor):
        self.factor = factor
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        now = self.factor(self.last_epoch)
        previous = self.factor(max(self.last_epoch - 1, 0))
        for group in self.optimizer.param_groups:
            if "initial_lr" not in group:  # joined since the last step, at group["lr"] under `previous`
                group["initial_lr"] = group["lr"] / max(previous, 1e-12)
        return [group["initial_lr"] * now for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything but the optimizer and the factor function (rebuilt from the hyperparameters on resume)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "factor")}


def task_metrics(task: str, num_outputs: int, confidence_threshold: float | None = None) -> MetricCollection:
    if task == "regression":
        return MetricCollection(
            {
                "pearson": PearsonCorrCoef(),
                "spearman": SpearmanCorrCoef(),
                "r2": R2Score(),
                "mse": MeanSquaredError(),
            }
        )
    metrics = {
        "acc": MulticlassAccuracy(num_outputs, average="micro"),
        "f1": MulticlassF1Score(num_outputs, average="macro"),
        "ece": MulticlassCalibrationError(num_outputs, n_bins=15, norm="l1"),
    }
    if confidence_threshold is not None:
        metrics["coverage"] = SelectiveAccuracy(confidence_threshold, "coverage")
        metrics["selective_acc"] = SelectiveAccuracy(confidence_threshold, "accuracy")
    return MetricCollection(metrics)


class NonFiniteLossError(FloatingPointError):
    """A NaN/Inf training loss (or weights): the message names the step and batch."""


class SequenceTask(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        task: Literal["regression", "classification"] = "regression",
        num_outputs: int = 1,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        schedule: Literal["cosine", "constant", "onecycle"] = "cosine",
        unused_parameters: Literal["error", "warn", "ignore"] = "error",
        label_smoothing: float = 0.0,
        confidence_threshold: float | None = None,
        layer_decay: float | None = None,
        nonfinite_loss: Literal["stop", "skip"] = "stop",
    ):
        """
        Args:
            net: The architecture: ``forward(x (B, L, C), lengths (B,)) -> (B, num_outputs)``.
            task: ``regression`` (MSE; Pearson, Spearman, R², MSE) or ``classification`` (cross-entropy;
                accuracy, macro-F1); linked from the data.
            num_outputs: 1 for regression, the number of classes for classification; linked from the data.
            target_mean: Mean of the training labels (regression); linked from the data. The net predicts
                standardized targets, so its output starts at the right scale; predictions, metrics and
                ``predict`` are in the labels' own units.
            target_std: Standard deviation of the training labels (regression); linked from the data.
            lr: Peak learning rate of AdamW.
            weight_decay: AdamW weight decay on weight matrices (not on biases and norms).
            warmup_fraction: Share of the training steps spent in linear warm-up.
            schedule: ``cosine`` decay to zero after warm-up, ``constant``, or ``onecycle`` (torch's OneCycleLR
                peaking at ``lr`` after ``warmup_fraction`` of the steps, with momentum cycling).
            unused_parameters: Before training, one batch forward and backward finds trainable parameters
                that get no gradient: ``error`` stops the run, ``warn`` warns, ``ignore`` skips the check.
            label_smoothing: Classification: cross-entropy against targets smoothed by this much.
            confidence_threshold: Classification: also report ``coverage`` (the share of predictions whose top
                probability reaches this) and ``selective_acc`` (accuracy on those; the rest count as
                "unknown"). Expected calibration error (``ece``) is always reported.
            layer_decay: Layer-wise learning-rate decay for fine-tuning (e.g. 0.75 for a ViT): the head trains
                at ``lr``, each layer below at ``layer_decay`` times the one above. Needs a net with
                ``layer_groups()`` (``VisionTransformer``).
            nonfinite_loss: A NaN or infinite training loss: ``stop`` ends the run before that step's update,
                naming the step and batch; ``skip`` drops the batch (no update) and counts it in
                ``train/skipped_batches``. Under DDP the decision is taken together, so processes never diverge.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.task = task
        if task == "regression" and not target_std > 0:
            raise ValueError(
                f"target_std must be positive, got {target_std} (are all training labels equal?)"
            )
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.val_loss = MeanMetric()  # in standardized units for regression: what training minimises
        metrics = task_metrics(task, num_outputs, confidence_threshold)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.skipped_batches = 0

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, x_rc: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, L, C) or (B, L) ids with lengths (B,), or images (B, C, H, W) without -> regression (B,) or
        class logits (B, K); averaged over strands if x_rc is given."""
        out = self._net(x, lengths)
        if x_rc is not None:
            out = (out + self._net(x_rc, lengths)) / 2
        if self.task == "regression":
            return out.squeeze(-1) * self.target_std + self.target_mean
        return out

    def _net(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.net(x) if lengths is None else self.net(x, lengths)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(batch["x"], batch.get("lengths"), batch.get("x_rc"))
        y = batch["y"]
        if self.task == "regression":
            loss = F.mse_loss(out, y) / self.target_std**2  # = MSE of the standardized targets
        elif y.ndim == 2:  # soft targets (mixup / cutmix)
            loss = torch.sum(-y * F.log_softmax(out, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(out, y, label_smoothing=self.hparams.label_smoothing)
        return loss, out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss, _ = self.compute_loss(batch)
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # any process's bad loss stops (or skips) every process's step
            finite = not self.trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not finite:
            where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
            if self.hparams.nonfinite_loss == "stop":
                value = (
                    f"is {loss.item()}" if not torch.isfinite(loss) else "is not finite on another process"
                )
                raise NonFiniteLossError(
                    f"training loss {value} at {where}; stopped before the update (model.nonfinite_loss=skip "
                    "drops such batches instead; a lower model.lr or trainer.gradient_clip_val may help)"
                )
            self.skipped_batches += 1
            self.log("train/skipped_batches", float(self.skipped_batches), reduce_fx="max")
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["y"]))
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:  # never a NaN model as "best" or "last"
            raise NonFiniteLossError(
                f"not saving a checkpoint whose weights are not finite: {', '.join(bad[:3])}"
            )

    def _evaluate(self, batch: dict, loss_metric: MeanMetric | None, metrics: MetricCollection) -> None:
        loss, out = self.compute_loss(batch)
        target = batch["y"]
        if loss_metric is not None:
            loss_metric.update(loss, weight=len(target))
            self.log("val/loss", loss_metric, prog_bar=True)
        metrics.update(out.float(), target)
        self.log_dict(metrics, prog_bar=False)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, None, self.test_metrics)

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch["x"], batch.get("lengths"), batch.get("x_rc"))
        return out if self.task == "regression" else out.softmax(-1)

    def param_groups(self) -> list[dict]:
        """AdamW groups: weight decay on weight matrices only; with ``layer_decay``, each layer of a net that
        lists its layers (``layer_groups()``, input to output) gets ``lr * layer_decay ** (layers above it)``."""
        hp = self.hparams
        layers = (
            self.net.layer_groups()
            if hp.layer_decay is not None and hasattr(self.net, "layer_groups")
            else None
        )
        if hp.layer_decay is not None and layers is None:
            raise ValueError(
                f"model.layer_decay: {type(self.net).__name__} does not list its layers (layer_groups)"
            )
        if layers is None:
            layers = [list(self.parameters())]
        groups = []
        for depth, params in enumerate(layers):
            scale = hp.layer_decay ** (len(layers) - 1 - depth) if hp.layer_decay is not None else 1.0
            trainable = [p for p in params if p.requires_grad]
            for decayed in (True, False):
                chosen = [p for p in trainable if (p.ndim >= 2) == decayed]
                if chosen:
                    wd = hp.weight_decay if decayed else 0.0
                    groups.append({"params": chosen, "weight_decay": wd, "lr": hp.lr * scale})
        return groups

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.hparams.lr)
        total = max(1, int(self._stepping_batches()))
        if self.hparams.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=self.hparams.lr,
                total_steps=total,
                pct_start=max(self.hparams.warmup_fraction, 1e-3),
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        warmup = int(self.hparams.warmup_fraction * total)
        cosine = self.hparams.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = ScheduledLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _stepping_batches(self) -> float:
        """``trainer.estimated_stepping_batches`` without its side effect: asked here, before a checkpoint is
        restored, it builds the training loader early, and Lightning then never gives the loader its saved
        position (a mid-epoch resume would restart the epoch's data order). The early loader is dropped, and
        Lightning builds it again after the restore, as it does when nothing asks early."""
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

    def parameter_counts(self) -> dict[str, int]:
        return {
            "params": sum(p.numel() for p in self.net.parameters()),
            "params_trainable": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
        }

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(self.parameter_counts())

    def on_train_start(self) -> None:
        if self.hparams.unused_parameters == "ignore":
            return
        devices = [self.device] if self.device.type == "cuda" else []
        # A fresh iterator draws a shuffling seed from the global RNG: restore it, so the check leaves the
        # run's data order and dropout masks exactly as they would be without it.
        with torch.random.fork_rng(devices=devices):
            batch = self._apply_batch_transfer_handler(next(iter(self.trainer.train_dataloader)))
            names = parameters_without_gradient(self, lambda: self.compute_loss(batch)[0])
        if names:
            total = sum(1 for p in self.parameters() if p.requires_grad)
            message = unused_parameters_message(names, total)
            if self.hparams.unused_parameters == "error":
                raise UnusedParametersError(message)
            warnings.warn(message, stacklevel=1)
