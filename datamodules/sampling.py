"""Loaders shared by the datamodules: training batches in an order fixed by (seed, epoch) that a checkpoint
can resume mid-epoch, length bucketing, and exact evaluation under DDP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from archbench.errors import DataError


class EpochShuffleSampler(Sampler[int]):
    """A random order that depends only on ``(seed, epoch)``, not on the global RNG: a resumed run sees the
    same order as the run it continues (torch's ``RandomSampler`` draws its seed from the global RNG)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        for start in range(0, self.n, 65_536):  # as Python ints a slice at a time (a list of all: ~36 B each)
            yield from order[start : start + 65_536].tolist()


class ResumableBatchSampler(BatchSampler):
    """``BatchSampler`` that can start its next pass ``k`` batches in (where a resumed run stopped) without
    loading the skipped examples; ``set_epoch`` reaches the sampler inside."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        super().__init__(sampler, batch_size, drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0  # taken now, by the pass that starts now
        batches = super().__iter__()
        for _ in range(skip):
            next(batches, None)
        return batches


class ResumableDataLoader(DataLoader):
    """A training ``DataLoader`` with Lightning's ``state_dict`` / ``load_state_dict`` interface: a checkpoint
    keeps the epoch and the number of batches training consumed in it (``consumed``, read from the trainer's
    loop: the loader itself has already pre-fetched the next batch), and a restored loader resumes there."""

    def __init__(self, *args, consumed: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.consumed = consumed

    def state_dict(self) -> dict:
        batches = self.consumed() if self.consumed is not None else 0
        return {"epoch": getattr(self.batch_sampler, "epoch", 0), "batches": int(batches)}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.batch_sampler, ResumableBatchSampler):
            self.batch_sampler.set_epoch(state["epoch"])
            self.batch_sampler.skip = state["batches"]


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
    """The loader every datamodule builds: training shuffled by (seed, epoch), or length-bucketed when
    ``hparams.bucket_by_length`` and ``lengths`` are given, resumable mid-epoch; validation/test in order, each
    example once across processes under DDP."""
    batch_size = per_device_batch_size(hparams, trainer)
    common = {
        # Its own generator: starting an iterator draws a worker seed, which must not come from (and shift) the
        # global RNG that dropout and augmentation use, or a resumed run would draw differently.
        "generator": torch.Generator().manual_seed(torch.initial_seed()),
        "num_workers": hparams.num_workers,
        "collate_fn": collate_fn,
        "persistent_workers": hparams.num_workers > 0,
    }
    if not train:
        sampler = evaluation_sampler(dataset, trainer)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
    if lengths is not None and hparams.get("bucket_by_length"):
        sampler = LengthBucketSampler(lengths, batch_size, seed=hparams.split_seed)
    else:  # the run's seed (seed_everything), so that seeds differ in data order too
        sampler = EpochShuffleSampler(len(dataset), seed=torch.initial_seed())
    consumed = None
    if trainer is not None:
        consumed = lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
    return ResumableDataLoader(
        dataset,
        batch_sampler=ResumableBatchSampler(sampler, batch_size, drop_last),
        consumed=consumed,
        **common,
    )


def per_device_batch_size(hparams, trainer) -> int:
    """``batch_size`` per process, or ``global_batch_size`` split over processes x gradient accumulation, so
    that changing the device count leaves the optimisation (examples per update) unchanged."""
    total = hparams.get("global_batch_size")
    if not total:
        return hparams.batch_size
    world = trainer.world_size if trainer is not None else 1
    accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
    if total % (world * accumulate):
        raise DataError(
            f"data.global_batch_size: {total} does not split over {world} process(es) x "
            f"{accumulate} accumulated batch(es) (trainer.devices x trainer.num_nodes, "
            "trainer.accumulate_grad_batches)"
        )
    return total // (world * accumulate)


class SplitLoaders:
    """``train/val/test/predict_dataloader`` of a datamodule that builds any split's loader with
    ``_loader(split, train)``; ``predict`` reads the ``predict`` split when the data has one, else ``test``."""

    def _has_predict_split(self) -> bool:
        return False

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict" if self._has_predict_split() else "test")


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
