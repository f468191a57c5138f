"""Samplers shared by the datamodules: length bucketing for training, exact evaluation under DDP."""

from __future__ import annotations

import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


class LengthBucketSampler(Sampler[int]):
    """Shuffles, then sorts by length within chunks of ``batch_size * chunk_batches`` examples, so that
    consecutive batches hold sequences of similar length (less padding) while batches stay random.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, chunk_batches: int = 50, seed: int = 0):
        self.lengths, self.batch_size, self.chunk = lengths, batch_size, batch_size * chunk_batches
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        chunks = [order[i : i + self.chunk] for i in range(0, len(order), self.chunk)]
        chunks = [c[np.argsort(self.lengths[c], kind="stable")] for c in chunks]
        batches = [b for c in chunks for b in np.array_split(c, max(1, -(-len(c) // self.batch_size)))]
        for k in rng.permutation(len(batches)):
            yield from batches[k].tolist()


def evaluation_sampler(dataset: Dataset, trainer) -> Sampler | None:
    """Under DDP, each example exactly once across processes (no padding duplicates in the metrics)."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
