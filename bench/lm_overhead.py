"""The Trainer's cost for language models: LanguageModelTask + LanguageModelDataModule under the Lightning
Trainer vs a hand-written nanoGPT-style loop, same model (gpt-mini), windows, seed and number of steps.

The losses must agree step for step ("loss_abs_diff"), and the median step time is compared over alternating
repeats after one unmeasured pair (as bench/trainer_overhead.py). The corpus: data/austen if it is there
(`python -m experiments data austen`), else a generated one. Prints one JSON line.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.lm import LanguageModelDataModule  # noqa: E402
from lit_models import GPT, LanguageModelTask  # noqa: E402
from lit_models.optim import WarmupCosineLR  # noqa: E402

SEED, STEPS, BATCH, CONTEXT, REPEATS, SKIPPED = 0, 30, 16, 128, 5, 5
LR, WEIGHT_DECAY, WARMUP_FRACTION = 3e-3, 0.01, 0.05
CACHE = tempfile.mkdtemp(prefix="lm-overhead-")


def corpus() -> str:
    austen = ROOT / "data" / "austen"
    if austen.is_dir():
        return str(austen)
    folder = Path(CACHE) / "corpus"
    folder.mkdir(exist_ok=True)
    rng = torch.Generator().manual_seed(0)
    words = [
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "she",
        "he",
        "was",
        "had",
        "her",
        "his",
        "not",
        "be",
        "with",
    ]
    for d in range(3):
        ids = torch.randint(0, len(words), (60_000,), generator=rng).tolist()
        (folder / f"{d}.txt").write_text(" ".join(words[i] for i in ids) + "\n")
    return str(folder)


def build() -> tuple[LanguageModelDataModule, LanguageModelTask]:
    data = LanguageModelDataModule(
        train_path=corpus(), context_length=CONTEXT, batch_size=BATCH, cache_dir=CACHE
    )
    data.setup()
    torch.manual_seed(SEED)
    net = GPT(data.vocab_size, CONTEXT, preset="gpt-mini")
    task = LanguageModelTask(
        net,
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
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[recorder])  # fmt: skip
    torch.manual_seed(SEED + 1)
    trainer.fit(task, datamodule=data)
    return recorder.losses, recorder.ends


def by_hand() -> tuple[list[float], list[float]]:
    data, task = build()
    net = task.net
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
        logits = net(batch["x"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ends.append(time.perf_counter())
        losses.append(loss.item())
    return losses, ends


def median_step(ends: list[float]) -> float:
    return statistics.median(b - a for a, b in zip(ends[SKIPPED:-1], ends[SKIPPED + 1 :], strict=True))


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
    print(json.dumps({"benchmark": "lm_overhead", "model": "GPT gpt-mini", "tokens_per_step": BATCH * CONTEXT,
                      "steps": STEPS, "repeats": REPEATS, "loss_abs_diff": max(diffs),
                      "trainer_step_ms": round(trainer_t * 1000, 2), "hand_loop_step_ms": round(hand_t * 1000, 2),
                      "step_time_ratio": round(trainer_t / hand_t, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
