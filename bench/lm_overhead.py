"""The Trainer's cost for language models: LanguageModelTask + LanguageModelDataModule under the Lightning
Trainer vs a hand-written nanoGPT-style loop, same model (gpt-mini), windows, seed and number of steps.

The losses must agree step for step ("loss_abs_diff"), and the median step time is compared over alternating
repeats after one unmeasured pair (as bench/trainer_overhead.py). The corpus: data/austen if it is there
(`python -m experiments data austen`), else a generated one. Prints one JSON line.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from overhead import compare, hand_run, trainer_run  # bench/overhead.py

from datamodules.lm import LanguageModelDataModule
from lit_models import GPT, LanguageModelTask
from lit_models.optim import WarmupCosineLR

ROOT = Path(__file__).resolve().parents[1]

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


def hand_loss(task: LanguageModelTask, batch: dict) -> torch.Tensor:
    logits = task.net(batch["x"])
    return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), ignore_index=-100)


def with_trainer() -> tuple[list[float], list[float]]:
    return trainer_run(build, STEPS, SEED + 1)


def by_hand() -> tuple[list[float], list[float]]:
    return hand_run(build, hand_loss, STEPS, SEED + 1, LR, WEIGHT_DECAY, WARMUP_FRACTION)


def main() -> None:
    result = compare(with_trainer, by_hand, STEPS, REPEATS, SKIPPED)
    print(
        json.dumps(
            {
                "benchmark": "lm_overhead",
                "model": "GPT gpt-mini",
                "tokens_per_step": BATCH * CONTEXT,
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
