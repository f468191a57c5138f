"""What bench/trainer_overhead.py and bench/lm_overhead.py share: a run under the Trainer and a hand-written
loop, the same steps, losses compared step by step and median step times over alternating repeats after one
unmeasured pair (the first run in a process was up to 15% off either way)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch


class StepRecorder(L.Callback):
    """The loss and the end time of every training step under the Trainer."""

    def __init__(self):
        self.losses, self.ends = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())
        self.losses.append(outputs["loss"].item())


def trainer_for(steps: int, recorder: StepRecorder) -> L.Trainer:
    """A Trainer that does nothing but ``steps`` training steps (no logging, checkpoints or validation)."""
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                     num_sanity_val_steps=0, callbacks=[recorder])  # fmt: skip


def warmup_cosine(steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """The factor of ``lit_models.optim.WarmupCosineLR``, for torch's ``LambdaLR`` in the hand loops."""
    warmup = int(warmup_fraction * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return factor


def trainer_run(build, steps: int, seed: int) -> tuple[list[float], list[float]]:
    """(losses, step end times) of ``steps`` steps of ``build() -> (datamodule, task)`` under the Trainer."""
    data, task = build()
    recorder = StepRecorder()
    torch.manual_seed(seed)
    trainer_for(steps, recorder).fit(task, datamodule=data)
    return recorder.losses, recorder.ends


def hand_run(build, loss_of, steps: int, seed: int, lr: float, weight_decay: float, warmup_fraction: float):
    """The same steps by hand: AdamW with decay on weight matrices only and the warm-up + cosine factor, the
    data's own training loader; ``loss_of(task, batch)`` is the loss the task would compute, written out."""
    data, task = build()
    decay = [p for p in task.net.parameters() if p.ndim >= 2]
    no_decay = [p for p in task.net.parameters() if p.ndim < 2]
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_fraction))
    task.net.train()
    losses, ends = [], []
    torch.manual_seed(seed)
    for step, batch in enumerate(data.train_dataloader()):
        if step == steps:
            break
        loss = loss_of(task, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ends.append(time.perf_counter())
        losses.append(loss.item())
    return losses, ends


def compare(with_trainer, by_hand, steps: int, repeats: int, skipped: int) -> dict:
    """Run both ``repeats`` times (after a warm-up pair); each returns (losses, step end times)."""

    def median_step(ends: list[float]) -> float:
        return statistics.median(b - a for a, b in zip(ends[skipped:-1], ends[skipped + 1 :], strict=True))

    trainer_steps, hand_steps, diffs = [], [], []
    with_trainer(), by_hand()  # warm-up pair, not measured
    for _ in range(repeats):
        t_losses, t_ends = with_trainer()
        h_losses, h_ends = by_hand()
        assert len(t_losses) == len(h_losses) == steps, (len(t_losses), len(h_losses))
        diffs.append(max(abs(a - b) for a, b in zip(t_losses, h_losses, strict=True)))
        trainer_steps.append(median_step(t_ends))
        hand_steps.append(median_step(h_ends))
    trainer_t, hand_t = statistics.median(trainer_steps), statistics.median(hand_steps)
    return {"steps": steps, "repeats": repeats, "loss_abs_diff": max(diffs),
            "trainer_step_ms": round(trainer_t * 1000, 2), "hand_loop_step_ms": round(hand_t * 1000, 2),
            "step_time_ratio": round(trainer_t / hand_t, 4)}  # fmt: skip
