"""Samplers shared by the datamodules: length bucketing for training, exact evaluation under DDP."""

from __future__ import annotations

import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler


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


def make_loader(
    dataset: Dataset,
    hparams,
    trainer,
    train: bool,
    lengths: np.ndarray | None = None,
    collate_fn=None,
    drop_last: bool = False,
) -> DataLoader:
    """The loader every datamodule builds: training shuffled, or length-bucketed when ``hparams.bucket_by_length``
    and ``lengths`` are given; validation/test in order, each example once across processes under DDP."""
    sampler = None
    if train and lengths is not None and hparams.get("bucket_by_length"):
        sampler = LengthBucketSampler(lengths, hparams.batch_size, seed=hparams.split_seed)
    elif not train:
        sampler = evaluation_sampler(dataset, trainer)
    return DataLoader(
        dataset,
        batch_size=hparams.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=hparams.num_workers,
        collate_fn=collate_fn,
        persistent_workers=hparams.num_workers > 0,
        drop_last=drop_last,
    )


class ClassificationData:
    """The sizes a classification datamodule links into the model besides its own (``num_outputs``, ...)."""

    @property
    def task(self) -> str:
        return "classification"

    @property
    def target_mean(self) -> float:
        return 0.0

    @property
    def target_std(self) -> float:
        return 1.0
