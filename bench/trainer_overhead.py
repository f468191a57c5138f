"""The Trainer's cost: PredictionTask + DNADataModule under the Lightning Trainer vs a hand-written PyTorch
loop, same model (the default CNN), data, seed and number of steps.

The losses must agree step for step ("loss_abs_diff", the largest difference), and the median step time
is compared over alternating repeats (trainer, loop, trainer, loop, ...) after one unmeasured pair that
warms the allocator and the caches (the first run in a process was up to 15% off either way). Prints one
JSON line.
"""

from __future__ import annotations

import json
from functools import partial

import torch
import torch.nn.functional as F
from overhead import compare, hand_run, trainer_run  # bench/overhead.py

from datamodules.dna import DNADataModule, Simulation, one_hot
from lit_models import DilatedCNN, PredictionTask
from lit_models.optim import WarmupCosineLR

SEED, STEPS, BATCH, REPEATS, WARMUP_STEPS_SKIPPED = 0, 40, 64, 5, 5
LR, WEIGHT_DECAY, WARMUP_FRACTION = 3e-3, 0.01, 0.05


def build() -> tuple[DNADataModule, PredictionTask]:
    data = DNADataModule(
        simulation=Simulation(n_train=STEPS * BATCH, n_val=BATCH, n_test=BATCH), batch_size=BATCH
    )
    data.setup()
    torch.manual_seed(SEED)
    net = DilatedCNN(data.in_channels, data.num_outputs, dropout=0.0)  # as experiments/dna/cnn.yaml
    task = PredictionTask(
        net,
        target_mean=data.target_mean,
        target_std=data.target_std,
        optimizer=partial(torch.optim.AdamW, lr=LR, weight_decay=WEIGHT_DECAY),
        lr_scheduler=partial(WarmupCosineLR, warmup_fraction=WARMUP_FRACTION),
    )
    return data, task


def hand_loss(task: PredictionTask, batch: dict) -> torch.Tensor:
    net, mean, std = task.net, task.target_mean, task.target_std  # the same float32 buffers as the task
    out = net(one_hot(batch["x"]), batch["lengths"]).squeeze(-1) * std + mean
    return F.mse_loss(out, batch["y"].float()) / std**2


def with_trainer() -> tuple[list[float], list[float]]:
    return trainer_run(build, STEPS, SEED + 1)


def by_hand() -> tuple[list[float], list[float]]:
    return hand_run(build, hand_loss, STEPS, SEED + 1, LR, WEIGHT_DECAY, WARMUP_FRACTION)


def main() -> None:
    result = compare(with_trainer, by_hand, STEPS, REPEATS, WARMUP_STEPS_SKIPPED)
    print(
        json.dumps(
            {
                "benchmark": "trainer_overhead",
                "model": "DilatedCNN (experiments/dna/cnn.yaml defaults)",
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
