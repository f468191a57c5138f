"""A callback for the benchmarks that train through the CLI: training samples/s over every process, from the
start of step ``warmup`` (CUDA context, cuDNN autotuning and allocator growth left out) to the end of the fit,
the GPU synchronised at both ends."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback


class StepTimer(Callback):
    def __init__(self, batch: int, warmup: int = 20):
        self.batch, self.warmup = batch, warmup
        self.start, self.throughput = 0.0, 0.0

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        steps = trainer.global_step - self.warmup
        if steps < 1:
            raise ValueError(
                f"{trainer.global_step} steps leave none to time after {self.warmup} warm-up steps"
            )
        self.throughput = steps * self.batch * trainer.world_size / (time.perf_counter() - self.start)
