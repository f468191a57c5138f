"""Callbacks of the command line: measurements for the comparison table, and the prediction writer."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from datamodules.files import write_atomic


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return len(batch)


class RunStats(Callback):
    """Wall time of ``fit``, training throughput (samples/s over all processes, validation excluded) and
    peak memory (CUDA: peak allocated; CPU: peak resident set size of this process, sampled every batch).
    Kept in checkpoints, so a resumed run reports the totals of all its parts.
    """

    def __init__(self):
        self.train_seconds = 0.0
        self.throughput = 0.0
        self.peak_memory_mb = 0.0
        self._process = psutil.Process()
        self._before = {"seconds": 0.0, "samples": 0, "busy": 0.0, "peak_mb": 0.0}  # earlier parts of the run
        self._fit_start = None
        self._samples, self._busy = 0, 0.0

    def state_dict(self) -> dict:
        now = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return {
            "seconds": self._before["seconds"] + now,
            "samples": self._before["samples"] + self._samples,
            "busy": self._before["busy"] + self._busy,
            "peak_mb": max(self._before["peak_mb"], self._peak_mb()),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._before = dict(state_dict)

    def _peak_mb(self) -> float:
        if self._fit_start is None:
            return 0.0
        if self._device.type == "cuda":
            return torch.cuda.max_memory_allocated(self._device) / 2**20
        return self._peak_rss / 2**20

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()
        self._device = pl_module.device
        self._samples, self._busy = 0, 0.0
        self._peak_rss = self._process.memory_info().rss
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_start(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()  # a resumed run starts mid-epoch, without on_train_epoch_start

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._busy += now - self._mark
        self._mark = now
        self._samples += _batch_size(batch) * trainer.world_size
        self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()  # validation time is not training time

    def on_fit_end(self, trainer, pl_module) -> None:
        total = self.state_dict()
        self.train_seconds = total["seconds"]
        self.throughput = total["samples"] / total["busy"] if total["busy"] else 0.0
        self.peak_memory_mb = total["peak_mb"]


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs as TSV: one row per input sequence, in input order."""

    def __init__(self, output: str | None = None):
        """
        Args:
            output: File to write. Empty: ``predictions.tsv`` in the run's log folder.
        """
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        path = Path(self.output or Path(trainer.log_dir or ".") / "predictions.tsv")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        index = [i for batch in batch_indices[0] for i in batch] if batch_indices else []
        values = torch.cat([p.reshape(len(p), -1) for p in predictions]).cpu()
        columns = ["prediction"] if values.shape[1] == 1 else [f"p{k}" for k in range(values.shape[1])]
        rows = sorted(zip(index or range(len(values)), values.tolist(), strict=True))
        lines = ["index\t" + "\t".join(columns)] + [
            f"{i}\t" + "\t".join(f"{v:.6g}" for v in row) for i, row in rows
        ]
        write_atomic(path, "\n".join(lines) + "\n")
        print(f"predictions: {path}")


def constant_factor(epoch: int) -> float:
    """For ``BackboneFinetuning(lambda_func=...)``: keep the backbone's learning rate where it starts."""
    return 1.0


class BackboneFinetuning(callbacks.BackboneFinetuning):
    """Lightning's ``BackboneFinetuning`` (frozen backbone for ``unfreeze_backbone_at_epoch`` epochs, then
    trained with its own learning rate), with frozen norm layers that stay consistent.

    With ``train_bn=False`` the backbone's norm layers are frozen as well and kept in eval mode while frozen:
    they normalise with their stored (e.g. ImageNet) statistics in training as in validation; once unfrozen,
    they train with the rest. Lightning 2.6
    ignores ``train_bn`` when freezing (its norm layers stay trainable), and its frozen norm layers would
    normalise with batch statistics in training but stored ones in validation. ``train_bn=True`` (the
    default, as fastai) lets the norm layers train and update their statistics while the rest is frozen.
    """

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone, train_bn=True)
        if not self.train_bn:
            for norm in self._norms(pl_module):
                for p in norm.parameters(recurse=False):
                    p.requires_grad = False

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        frozen_norms, self.train_bn = self.train_bn, True  # unfreezing trains all of it, norm layers included
        try:
            super().finetune_function(pl_module, epoch, optimizer)
        finally:
            self.train_bn = frozen_norms

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Lightning puts the module back in train mode after each validation: re-apply every batch.
        if not self.train_bn and trainer.current_epoch < self.unfreeze_backbone_at_epoch:
            for norm in self._norms(pl_module):
                norm.eval()

    @staticmethod
    def _norms(pl_module) -> list[torch.nn.Module]:
        return [
            m for m in pl_module.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
