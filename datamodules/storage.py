"""One store for sequences of varying length, whatever they hold: DNA base codes (one byte per base) and text
token ids alike. A flat array of values, the offsets where each sequence starts, and one label each; the
arrays may be memory-mapped ``.npy`` files, and a subset is a view through an index (the values stay on disk
and are read per batch), so a process's memory does not grow with the data.

One dataset and one collate serve every modality: a batch is ``x`` (B, L) padded with ``pad_value``,
``lengths`` (B,) and ``y`` (B,).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from archbench.errors import DataError
from datamodules.files import NpyStream
from datamodules.splits import IndexView

STORE_FILES = ("values.npy", "offsets.npy", "labels.npy")


@dataclass
class RaggedStore:
    values: np.ndarray  # (total,) uint8 DNA codes or int32 token ids
    offsets: np.ndarray  # (rows + 1,) int64; row r is values[offsets[r]:offsets[r + 1]]
    labels: np.ndarray  # (rows,) float32 labels / class ids, or int64 class ids (-1: unlabelled)
    source: str = "<memory>"
    index: IndexView | np.ndarray | None = None  # the rows of this subset, in order; None: every row

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.index is None else len(self.index)

    def rows(self, i) -> np.ndarray:
        """Rows of the underlying arrays for positions ``i`` of this (sub)set."""
        i = np.asarray(i, dtype=np.int64)
        return i if self.index is None else np.asarray(self.index[i], dtype=np.int64)

    def lengths_of(self, i) -> np.ndarray:
        rows = self.rows(i)
        return np.asarray(self.offsets[rows + 1] - self.offsets[rows], dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        """Every sequence's length, in memory (8 bytes each): for small data; loaders use ``lengths_of``."""
        return self.lengths_of(np.arange(len(self)))

    def labels_of(self, i) -> np.ndarray:
        return np.asarray(self.labels[self.rows(i)])

    def item(self, i: int) -> tuple[np.ndarray, float]:
        row = int(self.rows(i))
        return np.asarray(self.values[self.offsets[row] : self.offsets[row + 1]]), self.labels[row]

    def items(self, i) -> list[tuple[np.ndarray, float]]:
        rows = self.rows(i)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        labels = self.labels[rows]
        return [(np.asarray(self.values[a:b]), y) for a, b, y in zip(starts, ends, labels, strict=True)]

    def chunks(self, size: int = 65_536) -> Iterator[np.ndarray]:
        """Positions ``0..len-1``, ``size`` at a time (for statistics and checks that must not hold all)."""
        for first in range(0, len(self), size):
            yield np.arange(first, min(first + size, len(self)))

    def view(self, index) -> RaggedStore:
        """The subset at positions ``index`` (an array or an :class:`IndexView`) of this set, without copying."""
        if self.index is not None:
            index = IndexView(_Compose(self.index, index))
        return RaggedStore(self.values, self.offsets, self.labels, self.source, index)

    def take(self, index) -> RaggedStore:
        """The subset at positions ``index`` copied into compact arrays (in-memory data, e.g. after skipping
        bad records)."""
        rows = self.rows(index)
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(rows):  # every value of the chosen rows in one vectorized gather
            flat = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
            values = np.asarray(self.values[flat])
        else:
            values = np.zeros(0, dtype=self.values.dtype)
        return RaggedStore(values, offsets, np.asarray(self.labels[rows]), self.source)

    def row_hashes(self, size: int = 16_384) -> np.ndarray:
        """A 64-bit hash of each sequence's values (Python's bytes hash: equal sequences, equal hashes within
        this process; others collide with chance about 2^-64), a chunk at a time: 8 bytes per row."""
        out = np.empty(len(self), dtype=np.int64)
        for chunk in self.chunks(size):
            rows = self.rows(chunk)
            starts, ends = self.offsets[rows].tolist(), self.offsets[rows + 1].tolist()
            values = self.values
            out[chunk] = np.fromiter(
                (hash(values[a:b].tobytes()) for a, b in zip(starts, ends, strict=True)), np.int64, len(rows)
            )
        return out

    def max_length(self) -> int:
        return max((int(self.lengths_of(c).max()) for c in self.chunks()), default=0)

    def label_stats(self) -> tuple[float, float, float, float]:
        """(mean, std, min, max) of the labels, a chunk at a time."""
        n = total = squares = 0.0
        low, high = np.inf, -np.inf
        for c in self.chunks():
            y = self.labels_of(c).astype(np.float64)
            n, total, squares = n + len(y), total + y.sum(), squares + (y * y).sum()
            low, high = min(low, y.min(initial=np.inf)), max(high, y.max(initial=-np.inf))
        mean = float(total / max(n, 1))
        return mean, float(np.sqrt(max(squares / max(n, 1) - mean * mean, 0.0))), float(low), float(high)


class _Compose:
    """Rows of a view of a view: ``outer[inner[i]]``."""

    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        return self.outer[np.asarray(self.inner[i], dtype=np.int64)]


def open_store(
    folder: str | Path, names: tuple[str, str, str] = STORE_FILES, what: str = "store"
) -> RaggedStore:
    """Memory-map a store folder: nothing but the array headers is read until batches need their values."""
    folder = Path(folder)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: not an encoded {what} folder (missing {', '.join(missing)})")
    try:
        values, offsets, labels = (np.load(folder / n, mmap_mode="r") for n in names)
    except ValueError as err:
        raise DataError(f"{folder}: damaged encoded {what} folder ({err})") from None
    n = len(offsets) - 1
    problem = None
    if values.ndim != 1:
        problem = f"{names[0]}: expected a 1-D array, found {values.ndim}-D {values.dtype}"
    elif offsets.ndim != 1 or n < 0 or offsets[0] != 0 or offsets[-1] != len(values):
        problem = f"{names[1]}: must start at 0 and end at the {len(values)} values"
    elif len(labels) != n:
        problem = f"{names[2]}: {len(labels)} labels for {n} sequences"
    if problem:
        raise DataError(f"{folder}: {problem}")
    return RaggedStore(values, offsets, labels, source=str(folder))


class StoreWriter:
    """A store written in pieces (``append``) as memory-mappable ``.npy`` files, for data larger than memory;
    ``close`` puts the files in place, ``discard`` leaves nothing."""

    def __init__(
        self, folder: str | Path, value_dtype, label_dtype, names: tuple[str, str, str] = STORE_FILES
    ):
        folder = Path(folder)
        self.paths = [folder / n for n in names]
        self.streams = [
            NpyStream(p, d) for p, d in zip(self.paths, (value_dtype, np.int64, label_dtype), strict=True)
        ]
        self.streams[1].append(np.zeros(1, dtype=np.int64))
        self.rows = self.total = 0

    def append(self, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
        self.streams[0].append(values)
        self.streams[1].append(self.total + np.cumsum(lengths, dtype=np.int64))
        self.streams[2].append(labels)
        self.rows, self.total = self.rows + len(lengths), self.total + int(np.sum(lengths))

    def close(self) -> None:
        for stream in self.streams:
            stream.close()

    def discard(self) -> None:
        for stream in self.streams:
            stream.discard()
        for path in self.paths:
            path.unlink(missing_ok=True)


class RaggedDataset(Dataset):
    """Sequence ``i`` of a store and its label; a batch of positions is read in one call (``__getitems__``)."""

    def __init__(self, store: RaggedStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[np.ndarray, float]:
        return self.store.item(i)

    def __getitems__(self, indices: list[int]) -> list[tuple[np.ndarray, float]]:
        return self.store.items(indices)


class RaggedCollate:
    """Pads a list of (values, label) to the batch's longest sequence with ``pad_value``:
    ``{"x": (B, L) of dtype, "lengths": (B,), "y": (B,)}``."""

    def __init__(self, pad_value: int, dtype=np.int64):
        self.pad_value, self.dtype = pad_value, dtype

    def __call__(self, items: list[tuple[np.ndarray, float]]) -> dict[str, torch.Tensor]:
        lengths = np.fromiter((len(v) for v, _ in items), dtype=np.int64, count=len(items))
        x = np.full((len(items), int(lengths.max(initial=0))), self.pad_value, dtype=self.dtype)
        for row, (v, _) in enumerate(items):
            x[row, : len(v)] = v
        return {
            "x": torch.from_numpy(x),
            "lengths": torch.from_numpy(lengths),
            "y": torch.from_numpy(np.array([y for _, y in items])),
        }


def shared_rows(train: RaggedStore, other: RaggedStore, train_hashes: np.ndarray | None = None) -> np.ndarray:
    """Positions of ``other`` whose sequence also occurs in ``train`` (an exact copy: same values, same length);
    ``train_hashes``: ``train.row_hashes()``, sorted, when already computed. A binary search in the sorted hashes:
    8 bytes per held-out row beside them (``np.isin`` sorted a copy of both, several times their size, which data
    larger than the memory limit could not afford)."""
    if not len(train) or not len(other):
        return np.zeros(0, dtype=np.int64)
    if train_hashes is None:
        train_hashes = _sorted_hashes(train)
    mine = other.row_hashes()
    at = np.searchsorted(train_hashes, mine)
    np.minimum(at, len(train_hashes) - 1, out=at)
    return np.flatnonzero(train_hashes[at] == mine)


def _sorted_hashes(store: RaggedStore) -> np.ndarray:
    hashes = store.row_hashes()
    hashes.sort()  # in place: no second copy
    return hashes


def warn_shared(
    splits: dict[str, RaggedStore], what: str, sources: dict[str, str] | None = None, show=None
) -> None:
    """One warning per held-out split (val, test) that shares sequences with training: scores on copies of
    training examples measure memory, not generalisation, and skew a comparison of models that memorise unequally.
    Said, not refused: some data holds honest repeats (short texts, common motifs). ``sources`` names the splits
    (default: each store's source); ``show`` renders a row's values (the first copy is quoted). On rank zero
    only: under DDP every process loads the same splits (hashing costs about 1 s per million sequences)."""
    from lightning.pytorch.utilities import rank_zero_only

    train = splits.get("train")
    if train is None or rank_zero_only.rank != 0:
        return
    hashes = _sorted_hashes(train) if len(train) else None  # once for both held-out splits
    for name in ("val", "test"):
        if name not in splits:
            continue
        held = splits[name]
        shared = shared_rows(train, held, hashes)
        if len(shared):
            first = int(shared[0])
            quoted = f": {show(held.item(first)[0])}" if show is not None else ""
            say_shared((sources or {}).get(name, held.source), len(shared), len(held), f"{name} {what}", name,
                       f"the first is number {first + 1} of the {name} split{quoted}",
                       "Deduplicate the data, or hold out by group,")  # fmt: skip


def say_shared(where: str, shared: int, total: int, what: str, split: str, first: str, remedy: str) -> None:
    """The warning every modality gives for held-out examples that also occur in training."""
    rank_zero_warn(
        f"{where}: {shared} of {total} {what} ({shared / total:.1%}) also occur in training ({first}); the {split} "
        f"scores count them. {remedy} to score only what was not seen",
        stacklevel=6,
    )
