"""The loaders every datamodule builds, sharded by rank by the project itself.

Training: an order fixed by (seed, epoch), optionally length-bucketed, cut into batches; under DDP rank ``r``
takes batches ``r, r + W, r + 2W, ...`` of that one order, so the ranks' batches are disjoint shards of the
single-process order and bucketing survives. Evaluation: rank ``r`` reads rows ``r, r + W, ...``: each
example exactly once across processes. Both samplers are ``DistributedSampler``s, which is how Lightning
knows not to replace them with its own (it would otherwise inject ``DistributedSampler(shuffle=True)`` under
DDP and rebuild the batch sampler around it: bucketing and the seeded order would silently go). Neither holds
the epoch's order: positions are computed a batch at a time, so index memory does not grow with the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from archbench.checkpoint_files import check_checkpoint
from archbench.errors import DataError, EmptySplitError
from datamodules.splits import LazyPermutation


class EpochSampler(DistributedSampler):
    """Training positions for one rank: the epoch's order (``LazyPermutation`` keyed by seed and epoch), in
    batches of ``batch_size``; with ``lengths``, each chunk of ``batch_size * chunk_batches`` consecutive
    positions is sorted by length before it is cut, and its batches are shuffled within the chunk (less
    padding, batches still random). Rank ``r`` of ``W`` takes batches ``r, r + W, ...``; ranks short of a
    batch at the end take one from the start of the order, so every rank makes the same number of steps.

    With ``samples``, an epoch is the first ``samples`` positions of that order (a draw without replacement
    from ``range(n)``: the language-model data's random context windows, fewer per epoch than start positions).

    ``resume(epoch, k)`` leaves out the first ``k`` batches of that epoch's pass without reading them (a resumed
    run continues mid-epoch); a pass of another epoch starts from its beginning (Lightning may restart on the
    last batch of an epoch without reading from the loader again).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        lengths: Callable[[np.ndarray], np.ndarray] | None = None,
        chunk_batches: int = 50,
        drop_last: bool = False,
        samples: int | None = None,
    ):
        super().__init__(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop_last
        )
        self.domain, n = n, min(n, samples) if samples is not None else n
        self.n, self.batch_size, self.lengths, self.chunk_batches = n, batch_size, lengths, chunk_batches
        self._resume: tuple[int, int] | None = None  # (epoch, batches to leave out of its pass)
        self._chunk = None  # the chunk being read: (key, its positions sorted by length, its block order)
        self.global_batches = n // batch_size if drop_last else -(-n // batch_size)
        self.local_batches = -(-self.global_batches // world) if self.global_batches else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches: int) -> None:
        self.epoch, self._resume = epoch, (epoch, batches)

    def _global_batch(self, order: LazyPermutation, j: int) -> np.ndarray:
        """Positions of batch ``j`` of the epoch's order."""
        b = self.batch_size
        if self.lengths is None:
            return order[np.arange(j * b, min((j + 1) * b, self.n))]
        chunk, k = divmod(j, self.chunk_batches)
        if self._chunk is None or self._chunk[0] != (self.seed, self.epoch, chunk):
            first = chunk * b * self.chunk_batches
            members = order[np.arange(first, min(first + b * self.chunk_batches, self.n))]
            members = members[np.argsort(self.lengths(members), kind="stable")]
            blocks, full = -(-len(members) // b), len(members) // b
            rng = np.random.default_rng((self.seed, self.epoch, chunk))
            # a short last block stays last: it is the only partial batch of the epoch, and the last of its rank
            shuffled = np.concatenate([rng.permutation(full), np.arange(full, blocks)])
            self._chunk = ((self.seed, self.epoch, chunk), members, shuffled)
        _, members, shuffled = self._chunk
        block = int(shuffled[k])
        return members[block * b : (block + 1) * b]

    def __len__(self) -> int:
        if not self.global_batches:
            return 0
        last = (self.local_batches - 1) * self.num_replicas + self.rank
        short = self.n % self.batch_size if (not self.drop_last and last == self.global_batches - 1) else 0
        return self.local_batches * self.batch_size - (self.batch_size - short if short else 0)

    def __iter__(self) -> Iterator[int]:
        resume, self._resume = self._resume, None  # taken now, by the pass that starts now
        skip = resume[1] if resume is not None and resume[0] == self.epoch else 0
        order = LazyPermutation(self.domain, (self.seed, self.epoch))
        for j in range(skip, self.local_batches):
            g = (j * self.num_replicas + self.rank) % self.global_batches
            yield from self._global_batch(order, g).tolist()


class EvaluationSampler(DistributedSampler):
    """Rank ``r`` of ``W`` reads positions ``r, r + W, r + 2W, ...`` in order: every example exactly once
    across processes, no padding duplicates in the metrics (Lightning's ``UnrepeatedDistributedSampler`` does
    the same from a list of every index). ``pad`` (predict, whose rows are merged by index): a rank that would
    hold none reads one row again, since Lightning skips a process without batches, and the processes that
    gather its rows would wait for it."""

    def __init__(self, n: int, rank: int = 0, world: int = 1, pad: bool = False):
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=False)
        self.n = n
        self.positions = range(self.rank, self.n, self.num_replicas)
        if pad and n and not self.positions:
            self.positions = range(rank % n, rank % n + 1)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions)


class ResumableDataLoader(DataLoader):
    """A training ``DataLoader`` with Lightning's ``state_dict`` / ``load_state_dict`` interface: a checkpoint
    keeps the epoch and the number of batches training consumed in it (``consumed``, read from the trainer's
    loop: the loader itself has already pre-fetched the next batch), and a restored loader resumes there."""

    def __init__(self, *args, consumed: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.consumed = consumed

    def state_dict(self) -> dict:
        """The position, and what it counts in: batches of ``batch_size`` on each of ``processes``."""
        batches = self.consumed() if self.consumed is not None else 0
        return {"epoch": self.sampler.epoch, "batches": int(batches), "batch_size": self.sampler.batch_size,
                "processes": self.sampler.num_replicas}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.sampler.resume(state["epoch"], state["batches"])


def _seed(trainer) -> int:
    """The run's seed (``seed_everything``), the same on every process: rank 0's is sent to all, so that ranks
    seeded differently still shard one order."""
    seed = torch.initial_seed() % 2**63
    if trainer is not None and trainer.world_size > 1:
        seed = int(trainer.strategy.broadcast(seed, src=0))
    return seed


def make_loader(
    dataset: Dataset,
    hparams,
    trainer,
    train: bool,
    lengths: Callable[[np.ndarray], np.ndarray] | None = None,
    collate_fn=None,
    drop_last: bool = False,
    samples: int | None = None,
) -> DataLoader:
    """The loader every datamodule builds: training in an order fixed by the run's seed and the epoch (and
    length-bucketed when ``hparams.bucket_by_length`` and ``lengths`` are given), sharded by rank and resumable
    mid-epoch (``samples``: examples per epoch, drawn from the dataset without replacement; default all);
    validation/test in order, each example once across processes."""
    batch_size = per_device_batch_size(hparams, trainer)
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
    common = {
        # Its own generator: starting an iterator draws a worker seed, which must not come from (and shift) the
        # global RNG that dropout and augmentation use, or a resumed run would draw differently.
        "generator": torch.Generator().manual_seed(torch.initial_seed()),
        "num_workers": hparams.num_workers,
        "collate_fn": collate_fn,
        "persistent_workers": hparams.num_workers > 0,
        "batch_size": batch_size,
    }
    n = len(dataset)
    if not train:
        predicting = trainer is not None and trainer.predicting
        state = getattr(trainer, "state", None)  # None: no trainer, or a stand-in of one
        command = str(getattr(state.fn, "value", state.fn)) if state is not None else "fit"
        if n == 0 and command in ("validate", "test", "predict"):  # Lightning would end at once, status 0
            raise empty_split(command)
        if 0 < n < world and not predicting:  # Lightning stops on a process without batches, in its words
            split = "test" if trainer.testing else "validation"
            raise DataError(
                f"data: the {split} split has {n} example(s), fewer than the {world} processes that share it "
                f"(trainer.devices x trainer.num_nodes), each of which scores at least one: use at most {n} "
                f"process(es) or a larger {split} split"
            )
        sampler = EvaluationSampler(n, rank, world, pad=predicting)
        return DataLoader(dataset, sampler=sampler, drop_last=drop_last, **common)
    bucket = lengths if hparams.get("bucket_by_length") else None
    sampler = EpochSampler(
        n, batch_size, _seed(trainer), rank, world, bucket, drop_last=drop_last, samples=samples
    )
    consumed = None
    if trainer is not None:
        consumed = lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
    return ResumableDataLoader(dataset, sampler=sampler, drop_last=drop_last, consumed=consumed, **common)


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


def check_loader_options(hparams) -> None:
    """The loader options every datamodule takes, checked where they enter (the constructor)."""
    for name in ("batch_size", "global_batch_size"):
        value = hparams.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(f"data.{name}: {value!r} is not a positive integer")
    if hparams.get("batch_size") is None and hparams.get("global_batch_size") is None:
        raise DataError("data.batch_size: None is not a positive integer (or give data.global_batch_size)")
    if not isinstance(hparams.num_workers, int) or hparams.num_workers < 0:
        raise DataError(f"data.num_workers: {hparams.num_workers!r} is not a non-negative integer")
    for name in ("val_fraction", "test_fraction"):
        value = hparams.get(name)
        if value is not None and not 0.0 <= value < 1.0:
            raise DataError(f"data.{name}: {value} is outside [0, 1)")
    # the shares held out of the training data: a split given as a file takes none
    shares = [
        0.0 if hparams.get(f"{s}_path") else hparams.get(f"{s}_fraction") or 0.0 for s in ("val", "test")
    ]
    if sum(shares) >= 1.0:
        raise DataError(
            f"data.val_fraction: {shares[0]}, with data.test_fraction {shares[1]}, leaves no training data (their sum "
            "must stay below 1)"
        )


def empty_split(command: str) -> EmptySplitError:
    """The error of a ``validate``/``test``/``predict`` whose split has no examples (predict reads the test split
    where it has no predict_path)."""
    split, option = ("validation", "val") if command == "validate" else ("test", "test")
    files = f"data.{option}_path" + (", data.predict_path" if command == "predict" else "")
    return EmptySplitError(
        f"data: the {split} split has no examples, so {command} has nothing to do: give a file ({files}) "
        "or a held-out fraction above 0 of a training file large enough to hold one"
    )


class SplitLoaders:
    """``train/val/test/predict_dataloader`` of a datamodule that builds any split's loader with
    ``_loader(split, train)``; ``predict`` reads the ``predict`` split when the data has one, else ``test``.

    A datamodule whose ``state_dict`` holds the keys of ``SAVED`` (what the model's inputs and outputs mean: class
    names, a tokenizer, sizes and statistics) can predict and test from a checkpoint alone: with
    ``data.checkpoint`` it takes that state from the checkpoint and reads only ``predict_path``, or without one
    ``test_path``."""

    SAVED: tuple[str, ...] = ()

    def _has_predict_split(self) -> bool:
        return False

    def _has_predict_option(self) -> bool:
        """Whether the datamodule takes a ``predict_path`` (a language model's data has none)."""
        return "predict_path" in inspect.signature(type(self)).parameters

    @classmethod
    def saved_state(cls, checkpoint: dict) -> dict | None:
        """This datamodule's state in a Lightning checkpoint (read with ``check_checkpoint``), or None when the
        checkpoint holds none with every key of ``SAVED`` (another datamodule's, or saved by an older version)."""
        state = checkpoint.get(cls.__qualname__)
        if not cls.SAVED or not isinstance(state, dict) or not all(k in state for k in cls.SAVED):
            return None
        return state

    def _checkpoint_state(
        self, path: str | None, predict_path: str | None, test_path: str | None
    ) -> dict | None:
        """The state ``data.checkpoint`` gives this datamodule in place of its training files' (None without
        one), or a DataError naming the option when the file cannot give it."""
        if not path:
            return None
        if not predict_path and not test_path:
            takes = "data.predict_path or data.test_path" if self._has_predict_option() else "data.test_path"
            raise DataError(
                f"data.checkpoint: {path} replaces the training data for files of their own: give {takes} (a test "
                "split held out of the training data needs its files)"
            )
        checkpoint = check_checkpoint(path, "data.checkpoint")
        if not checkpoint:  # a sharded (FSDP) folder: Lightning's strategy reads its weights, no data state
            raise DataError(
                f"data.checkpoint: {path} is a sharded (FSDP) checkpoint folder, which holds no data state; leave "
                "data.checkpoint empty to read the training files"
            )
        state = self.saved_state(checkpoint)
        if state is None:
            raise DataError(
                f"data.checkpoint: {path} holds no {type(self).__name__} state ({', '.join(self.SAVED)}): it was "
                "trained on other data or saved by an older version; leave data.checkpoint empty to read the "
                "training files"
            )
        return state

    def __str__(self) -> str:
        # LightningDataModule.__str__ builds every split's loader to print its size and swallows what they
        # raise; jsonargparse formats the datamodule while linking arguments, so a data error (an unknown
        # symbol in the validation file) vanished there and left a half-set-up datamodule behind.
        return f"{type(self).__name__}()"

    def evaluated_examples(self, command: str) -> int:
        """Examples of the split ``validate``/``test``/``predict`` reads (set up), for a check before any run
        starts: an empty one is refused with nothing written."""
        split = {"validate": "val", "test": "test"}.get(command) or (
            "predict" if self._has_predict_split() else "test"
        )
        return len(self._loader(split).dataset)

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
