"""Metrics of the prediction task: torchmetrics' own, plus selective accuracy (which torchmetrics lacks)."""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, R2Score, SpearmanCorrCoef


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


class R2(R2Score):
    """torchmetrics' R², NaN on fewer than two examples (as Pearson's and Spearman's are there), where
    torchmetrics raises: a one-sequence validation split ended the run with a traceback (trial 22)."""

    def compute(self) -> torch.Tensor:
        if self.total < 2:
            return torch.tensor(float("nan"))
        return super().compute()


def prediction_metrics(
    kind: str, num_outputs: int, confidence_threshold: float | None = None
) -> MetricCollection:
    """Regression: Pearson, Spearman, R², MSE. Classification: accuracy, macro-F1, expected calibration error,
    and with a threshold the coverage and accuracy of confident predictions."""
    if kind == "regression":
        return MetricCollection(
            {
                "pearson": PearsonCorrCoef(),
                "spearman": SpearmanCorrCoef(),
                "r2": R2(),
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
