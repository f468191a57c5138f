"""Padded tokens per epoch on Rotten Tomatoes (training split, batch 32): length bucketing vs padding to the
longest text of a random batch vs padding every text to ``max_length``. Counts pads, not time, so it is exact
on any machine. The bucketed and random epochs hold the same texts; the target is bucketing <= 0.5x random.
Prints one JSON line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from datamodules.sampling import EpochSampler
from datamodules.text import TextClassificationDataModule
from experiments.data import WHEEL_CACHE, write_minilm, write_rotten_tomatoes

DATA, MODEL = Path("data/rotten_tomatoes"), Path("data/pretrained/all-MiniLM-L6-v2")
MAX_LENGTH, BATCH, EPOCHS = 128, 32, 5


def pads(lengths: np.ndarray, order: list[int]) -> int:
    total = 0
    for start in range(0, len(order), BATCH):
        batch = lengths[order[start : start + BATCH]]
        total += int(batch.max() * len(batch) - batch.sum())
    return total


def main() -> None:
    if not (DATA / "train.csv").exists():
        write_rotten_tomatoes(DATA, WHEEL_CACHE)
    if not (MODEL / "tokenizer.json").exists():
        write_minilm(MODEL, WHEEL_CACHE)
    with tempfile.TemporaryDirectory() as cache:
        dm = TextClassificationDataModule(
            **{f"{s}_path": str(DATA / f"{s}.csv") for s in ("train", "val", "test")},
            tokenizer=str(MODEL),
            max_length=MAX_LENGTH,
            batch_size=BATCH,
            cache_dir=cache,
        )
        dm.setup()
        lengths = dm.splits["train"].lengths
    real = int(lengths.sum())
    bucketed, random_batches = [], []
    for epoch in range(EPOCHS):  # several epochs: both orders are random
        sampler = EpochSampler(len(lengths), BATCH, seed=0, lengths=lambda i: lengths[i])  # as training reads
        sampler.set_epoch(epoch)
        bucketed.append(pads(lengths, list(sampler)))
        random_batches.append(pads(lengths, np.random.default_rng(epoch).permutation(len(lengths)).tolist()))
    bucket, rand = float(np.mean(bucketed)), float(np.mean(random_batches))
    print(
        json.dumps(
            {
                "bench": "padding",
                "texts": len(lengths),
                "real_tokens": real,
                "pad_tokens_bucketed": round(bucket),
                "pad_tokens_random_batch": round(rand),
                "pad_tokens_max_length": int(len(lengths) * MAX_LENGTH - real),
                "bucketed_over_random": round(bucket / rand, 4),
                "target": 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
