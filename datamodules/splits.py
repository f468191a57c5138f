"""Random orders that never hold the whole order in memory, and the one seeded hold-out split every datamodule
uses.

numpy's ``permutation(n)`` builds all ``n`` indices (8 bytes each: 80 MB per process for 10 M sequences, in
every DDP process). :class:`LazyPermutation` computes the element at any position on demand: a keyed Feistel
network over the next power of four, with cycle walking back into ``[0, n)``, is a bijection of ``[0, n)``
whose order depends only on its key. numpy and torch have no such permutation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_GOLDEN, _MIX1, _MIX2 = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit (uint64 arithmetic wraps)."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


class LazyPermutation:
    """A pseudo-random permutation of ``range(n)`` fixed by ``key`` (a tuple of ints: seed, epoch, ...), read a
    position or a slice of positions at a time in O(1) memory per position."""

    ROUNDS = 6

    def __init__(self, n: int, key: tuple[int, ...]):
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self._half = np.uint64((bits + 1) // 2)
        self._mask = np.uint64((1 << int(self._half)) - 1)
        self._keys = np.random.SeedSequence([int(k) % 2**63 for k in key]).generate_state(
            self.ROUNDS, np.uint64
        )

    def __len__(self) -> int:
        return self.n

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right ^ key) & self._mask)
        return (left << self._half) | right

    def __getitem__(self, positions) -> np.ndarray | int:
        if isinstance(positions, slice):
            positions = np.arange(*positions.indices(self.n))
        scalar = np.ndim(positions) == 0
        x = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        if len(x) and (x.min() < 0 or x.max() >= self.n):
            raise IndexError(f"position out of range for a permutation of {self.n}")
        with np.errstate(over="ignore"):
            out = self._encrypt(x.astype(np.uint64))
            outside = out >= self.n
            while outside.any():  # cycle walking: the domain is at most 4n, so few rounds
                out[outside] = self._encrypt(out[outside])
                outside = out >= self.n
        out = out.astype(np.int64)
        return int(out[0]) if scalar else out


class IndexView:
    """Positions ``start..stop`` of an order (a :class:`LazyPermutation` or an array): the rows of a subset,
    computed when read. ``view[i]`` is row ``order[start + i]``."""

    def __init__(self, order, start: int = 0, stop: int | None = None):
        self.order, self.start = order, int(start)
        self.stop = len(order) if stop is None else int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i):
        if isinstance(i, slice):
            i = np.arange(*i.indices(len(self)))
        i = np.asarray(i, dtype=np.int64)
        if i.size and (i.min() < 0 or i.max() >= len(self)):
            raise IndexError(f"index out of range for a subset of {len(self)}")
        out = self.order[self.start + i]
        return int(out) if np.ndim(out) == 0 else np.asarray(out, dtype=np.int64)

    def chunks(self, size: int = 65_536) -> Iterator[np.ndarray]:
        """The rows in order, ``size`` at a time."""
        for first in range(0, len(self), size):
            yield self[np.arange(first, min(first + size, len(self)))]

    def materialize(self, sort: bool = False) -> np.ndarray:
        rows = np.concatenate(list(self.chunks())) if len(self) else np.zeros(0, dtype=np.int64)
        return np.sort(rows) if sort else rows


def hold_out(n: int, sizes: dict[str, int], seed: int) -> dict[str, IndexView]:
    """Seeded disjoint subsets of ``range(n)``: each name in ``sizes`` takes that many rows, in order, and
    ``"train"`` the rest. The same (n, sizes, seed) always gives the same rows."""
    order = LazyPermutation(n, (seed, 0x5E11))
    out, first = {}, 0
    for name, size in sizes.items():  # sizes summing past n leave "train" empty, which the callers refuse
        out[name] = IndexView(order, min(first, n), min(first + size, n))
        first += size
    out["train"] = IndexView(order, min(first, n), n)
    return out


def held_out_sizes(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Rows each held-out split takes of ``n``: its fraction, rounded, and one where a fraction above 0 rounds to
    none while a training row is left (a 5-row file's 10% was no row: fit then had no validation and test
    nothing to score, unsaid); a file too small for that holds out what it can, earlier splits first."""
    sizes = {name: int(round(f * n)) for name, f in fractions.items()}
    for name, f in fractions.items():
        if f > 0 and sizes[name] == 0 and sum(sizes.values()) + 1 < n:
            sizes[name] = 1
    return sizes


def seeded_subset(
    n: int, size: int | None, seed: int, salt: int, option: str | None = None, source: str = "the split"
) -> IndexView | None:
    """``size`` seeded rows of ``range(n)`` (None when there is no size or it is not smaller). A ``size`` above
    ``n`` takes every row, and says so naming ``option`` (``data.train_size``) and ``source`` when given."""
    if size is not None and size > n and option:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(f"{option} {size}: {source} has {n:,} examples; all {n:,} are used")
    if size is None or size >= n:
        return None
    return IndexView(LazyPermutation(n, (seed, salt)), 0, size)
