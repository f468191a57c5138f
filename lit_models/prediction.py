"""``PredictionTask``: one label per example (a DNA sequence, a text, an image), regression or classification.

The loss and metrics (torchmetrics, synchronised across devices) live here; the optimizer, schedule, checks
and logging every task shares live in :class:`lit_models.task.Task`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from lit_models.metrics import prediction_metrics
from lit_models.task import Task


class PredictionTask(Task):
    def __init__(
        self,
        net: nn.Module,
        task: Literal["regression", "classification"] = "regression",
        num_outputs: int = 1,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        label_smoothing: float = 0.0,
        confidence_threshold: float | None = None,
        **kwargs,
    ):
        """
        Args:
            net: The architecture: ``forward(x, lengths=None) -> (B, num_outputs)``.
            task: ``regression`` (MSE; Pearson, Spearman, R², MSE) or ``classification`` (cross-entropy;
                accuracy, macro-F1, calibration error); linked from the data.
            num_outputs: 1 for regression, the number of classes for classification; linked from the data.
            target_mean: Mean of the training labels (regression); linked from the data. The net predicts
                standardized targets, so its output starts at the right scale; predictions, metrics and
                ``predict`` are in the labels' own units.
            target_std: Standard deviation of the training labels (regression); linked from the data.
            label_smoothing: Classification: cross-entropy against targets smoothed by this much.
            confidence_threshold: Classification: also report ``coverage`` (the share of predictions whose top
                probability reaches this) and ``selective_acc`` (accuracy on those; the rest count as
                "unknown").
        """
        super().__init__(
            net, **kwargs
        )  # saves this class's arguments too (Lightning reads every __init__ frame)
        if task == "regression" and not target_std > 0:
            raise ValueError(
                f"target_std must be positive, got {target_std} (are all training labels equal?)"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing: {label_smoothing} is outside [0, 1)")
        if confidence_threshold is not None:
            # trial 29: 1.5 answered nothing (selective_acc NaN at every validation); a regression ignored it
            if task != "classification":
                raise ValueError(
                    f"model.confidence_threshold: {confidence_threshold} is for classification (a class "
                    f"probability), and this task is {task}; leave it out"
                )
            if not 0.0 < confidence_threshold <= 1.0:
                raise ValueError(
                    f"model.confidence_threshold: {confidence_threshold} is outside (0, 1]: it is the top class "
                    "probability a prediction needs to be answered"
                )
        self.task = task
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.val_loss = MeanMetric()  # in standardized units for regression: what training minimises
        metrics = prediction_metrics(task, num_outputs, confidence_threshold)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, x_rc: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Regression (B,) in the labels' units or class logits (B, K); averaged over strands if ``x_rc``."""
        out = self.net(x, lengths)
        if x_rc is not None:
            out = (out + self.net(x_rc, lengths)) / 2
        if self.task == "regression":
            return out.squeeze(-1) * self.target_std + self.target_mean
        return out

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(batch["x"], batch.get("lengths"), batch.get("x_rc"))
        y = batch["y"]
        if self.task == "regression":
            return F.mse_loss(out, y) / self.target_std**2, out  # = MSE of the standardized targets
        # Class ids (B,), or class probabilities (B, K) from mixup/cutmix: cross_entropy takes both.
        return F.cross_entropy(out, y, label_smoothing=self.hparams.label_smoothing), out

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
