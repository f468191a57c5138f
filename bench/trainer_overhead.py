"""The Trainer's cost: PredictionTask + DNADataModule under the Lightning Trainer vs a hand-written PyTorch
loop, same model (the default CNN), data, seed and number of steps.

The losses must agree step for step ("loss_abs_diff", the largest difference), and the median step time
is compared over alternating repeats (trainer, loop, trainer, loop, ...) after one unmeasured pair that
warms the allocator and the caches (the first run in a process was up to 15% off either way). Prints one
JSON line.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F

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


class StepRecorder(L.Callback):
    def __init__(self):
        self.losses, self.ends = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())
        self.losses.append(outputs["loss"].item())


def with_trainer() -> tuple[list[float], list[float]]:
    data, task = build()
    recorder = StepRecorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[recorder],
    )
    torch.manual_seed(SEED + 1)
    trainer.fit(task, datamodule=data)
    return recorder.losses, recorder.ends


def by_hand() -> tuple[list[float], list[float]]:
    data, task = build()
    net, mean, std = task.net, task.target_mean, task.target_std  # the same float32 buffers as the task
    decay = [p for p in net.parameters() if p.ndim >= 2]
    no_decay = [p for p in net.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": WEIGHT_DECAY}], lr=LR
    )
    warmup = int(WARMUP_FRACTION * STEPS)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, STEPS - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    net.train()
    losses, ends = [], []
    torch.manual_seed(SEED + 1)
    for step, batch in enumerate(data.train_dataloader()):
        if step == STEPS:
            break
        out = net(one_hot(batch["x"]), batch["lengths"]).squeeze(-1) * std + mean
        loss = F.mse_loss(out, batch["y"].float()) / std**2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ends.append(time.perf_counter())
        losses.append(loss.item())
    return losses, ends


def median_step(ends: list[float]) -> float:
    return statistics.median(
        b - a for a, b in zip(ends[WARMUP_STEPS_SKIPPED:-1], ends[WARMUP_STEPS_SKIPPED + 1 :], strict=True)
    )


def main() -> None:
    trainer_steps, hand_steps, diffs = [], [], []
    with_trainer(), by_hand()  # warm-up pair, not measured
    for _ in range(REPEATS):
        t_losses, t_ends = with_trainer()
        h_losses, h_ends = by_hand()
        assert len(t_losses) == len(h_losses) == STEPS, (len(t_losses), len(h_losses))
        diffs.append(max(abs(a - b) for a, b in zip(t_losses, h_losses, strict=True)))
        trainer_steps.append(median_step(t_ends))
        hand_steps.append(median_step(h_ends))
    trainer_t, hand_t = statistics.median(trainer_steps), statistics.median(hand_steps)
    print(
        json.dumps(
            {
                "benchmark": "trainer_overhead",
                "model": "DilatedCNN (experiments/dna/cnn.yaml defaults)",
                "steps": STEPS,
                "repeats": REPEATS,
                "loss_abs_diff": max(diffs),
                "trainer_step_ms": round(trainer_t * 1000, 2),
                "hand_loop_step_ms": round(hand_t * 1000, 2),
                "step_time_ratio": round(trainer_t / hand_t, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
