"""Algorithmic tasks, generated: what adaptive computation is for, and a test of length generalisation.

``parity`` (Graves 2016, section 3.1): a sequence of L entries, each -1, 0 or +1 (a random number 1..L of them
non-zero, at random places, each +1 or -1 with equal odds); the label is the parity of the count of +1 entries.
A model has to look at every non-zero entry, so harder examples (more of them) should take more ponder steps.

Train and validation sequences have lengths in ``train_lengths``; test sequences in ``test_lengths``, which may
lie beyond (longer than anything seen in training): validation then measures accuracy on the training lengths,
test on the longer ones. Every split is drawn from its own seed (``seed`` and the split's name), so the data is
the same on every machine and process. A batch: ``x`` (B, L, 1) float entries, zero-padded; ``lengths`` (B,);
``y`` (B,) the parity; ``difficulty`` (B,) the count of non-zero entries.
"""

from __future__ import annotations

import zlib

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.sampling import ClassificationData, SplitLoaders, check_loader_options, make_loader


def parity_examples(n: int, lengths: tuple[int, int], seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` parity sequences with lengths uniform in ``lengths`` (inclusive) -> (entries, labels)."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], np.empty(n, dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        entries = np.zeros(length, dtype=np.int8)
        nonzero = int(rng.integers(1, length + 1))
        places = rng.choice(length, size=nonzero, replace=False)
        entries[places] = rng.choice(np.array([-1, 1], dtype=np.int8), size=nonzero)
        sequences.append(entries)
        labels[i] = int((entries == 1).sum()) % 2
    return sequences, labels


class _Examples(Dataset):
    def __init__(self, sequences: list[np.ndarray], labels: np.ndarray):
        self.sequences, self.labels = sequences, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.sequences[i], int(self.labels[i])


def _collate(items: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(s) for s, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), 1)
    for row, (s, _) in enumerate(items):
        x[row, : len(s), 0] = torch.from_numpy(s.astype(np.float32))
    difficulty = torch.tensor([int(np.count_nonzero(s)) for s, _ in items])
    return {"x": x, "lengths": lengths, "y": torch.tensor([y for _, y in items]), "difficulty": difficulty}


class AlgorithmicDataModule(ClassificationData, SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        problem: str = "parity",
        train_lengths: tuple[int, int] = (1, 16),
        test_lengths: tuple[int, int] = (17, 32),
        n_train: int = 20_000,
        n_val: int = 2_000,
        n_test: int = 2_000,
        seed: int = 0,
        batch_size: int = 64,
        global_batch_size: int | None = None,
        num_workers: int = 0,
    ):
        """
        Args:
            problem: ``parity`` (Graves' parity of the +1 entries of a -1/0/+1 sequence).
            train_lengths: Shortest and longest sequence of the training and validation splits.
            test_lengths: Shortest and longest test sequence; beyond ``train_lengths`` to test length
                generalisation (``seq_len``, linked into the model, covers both).
            n_train: Training examples (one epoch).
            n_val: Validation examples (training lengths).
            n_test: Test examples (test lengths).
            seed: The data's seed (not the run's: every run of a comparison sees the same examples).
            batch_size: Examples per batch and process.
            global_batch_size: Examples per optimizer step over all processes (instead of ``batch_size``).
            num_workers: DataLoader worker processes.
        """
        super().__init__()
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        if problem != "parity":
            raise DataError(
                f"data.problem: {problem!r} is not an algorithmic task this module makes (parity)"
            )
        for name in ("train_lengths", "test_lengths"):
            low, high = getattr(self.hparams, name)
            if not 1 <= low <= high:
                raise DataError(
                    f"data.{name}: {[low, high]} must be [shortest, longest] with 1 <= shortest <= longest"
                )
        (low, longest), (shortest, high) = self.hparams.train_lengths, self.hparams.test_lengths
        # allowed (a test of trained lengths), but not what such a test is read as
        if shortest <= longest and high >= low:
            rank_zero_warn(
                f"data.test_lengths {list(self.hparams.test_lengths)} overlap data.train_lengths "
                f"{list(self.hparams.train_lengths)}: the test split holds lengths the model trained on, so its "
                "accuracy does not measure length generalisation alone (test from "
                f"{longest + 1} up for that)",
                stacklevel=2,
            )
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self.hparams, name) < 1:
                raise DataError(
                    f"data.{name}: {getattr(self.hparams, name)} is not a positive number of examples"
                )
        self.splits: dict[str, _Examples] = {}

    @property
    def in_channels(self) -> int:
        return 1

    @property
    def vocab_size(self) -> int:
        return 0

    @property
    def num_outputs(self) -> int:
        return 2

    @property
    def seq_len(self) -> int:
        return max(self.hparams.train_lengths[1], self.hparams.test_lengths[1])

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        h = self.hparams
        for split, n, lengths in (("train", h.n_train, h.train_lengths), ("val", h.n_val, h.train_lengths),
                                  ("test", h.n_test, h.test_lengths)):  # fmt: skip
            seed = zlib.crc32(f"{h.problem}/{split}/{h.seed}".encode())
            self.splits[split] = _Examples(*parity_examples(n, tuple(lengths), seed))

    def prediction_keys(self) -> list[tuple[str, np.ndarray]]:
        """For each ``predict`` row (the test split: generated data has no file to predict), the label it is scored
        against, as the other datamodules' test-split rows carry theirs."""
        self.setup()
        return [("label", self.splits["test"].labels)]

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        self.setup()
        return make_loader(self.splits[split], self.hparams, self.trainer, train, collate_fn=_collate)
