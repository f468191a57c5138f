"""A simulator of regulatory DNA: the built-in benchmark, deterministic by seed.

Each sequence is background DNA (GC 42%) into which real JASPAR motifs (see ``motifs.py``) are planted,
sampled base by base from their count matrices (sharpened: strong sites, nearer the consensus), without
overlaps. Its activity follows a grammar chosen so
that architectures differ in what they can learn:

- GATA1 activates (+1.0 per site), CEBPB represses (-0.8 per site): plain additive effects.
- SPI1 activates more the closer it sits to the 3' end, the "transcription start" (position effect).
- NFYA activates on the forward strand only (orientation effect; its motif is not palindromic).
- CTCF, planted in the first 44% of the sequence, and FOXA1, planted after the first 40%, each add +0.2
  alone, and +1.5 together when FOXA1 starts more than 100 bp after CTCF ends: a long-range interaction
  that a model with a narrow receptive field cannot see (at 250 bp it fires in about a fifth of sequences).

The label is that activity plus Gaussian noise. The noise ceiling is the Pearson r between the
noiseless and the noisy test labels: no model can expect to beat it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.motifs import JASPAR_COUNTS
from datamodules.storage import RaggedStore

BACKGROUND = np.array([0.29, 0.21, 0.21, 0.29])  # A, C, G, T
INTERACTION_GAP = 100  # bp between the end of CTCF and the start of FOXA1
SITE_SHARPNESS = 2.0  # planted sites are strong ones: base probabilities squared, then renormalised
MIN_LENGTH = 40
# motif: (probability a sequence gets a site, mean number of sites when it does, start range as fractions)
_PLANTING = {
    "GATA1": (0.6, 1.5, (0.0, 1.0)),
    "CEBPB": (0.5, 1.2, (0.0, 1.0)),
    "SPI1": (0.6, 1.2, (0.0, 1.0)),
    "NFYA": (0.6, 1.3, (0.0, 1.0)),
    "CTCF": (0.6, 1.0, (0.0, 0.44)),
    "FOXA1": (0.6, 1.0, (0.4, 1.0)),
}


@dataclass
class SimulatedSplit:
    data: RaggedStore  # noisy labels
    noiseless: np.ndarray  # (n,) activity before noise


def motif_probabilities(name: str, sharpness: float = 1.0) -> np.ndarray:
    """(width, 4) base probabilities of a JASPAR motif, with a small pseudocount.

    ``sharpness`` > 1 raises them to that power and renormalises: sites closer to the consensus, as
    strong binding sites are.
    """
    counts = np.asarray(JASPAR_COUNTS[name][1], dtype=np.float64)
    counts += 0.01 * counts.sum(1, keepdims=True)
    probs = (counts / counts.sum(1, keepdims=True)) ** sharpness
    return probs / probs.sum(1, keepdims=True)


def _sample_motif(rng: np.random.Generator, probs: np.ndarray, k: int) -> np.ndarray:
    cumulative = np.cumsum(probs, axis=1)  # (w, 4)
    u = rng.random((k, len(probs), 1))
    return np.minimum((u > cumulative[None, :, :-1]).sum(-1), 3).astype(np.uint8)  # (k, w)


def simulate(n: int, seq_len: int = 250, noise_std: float = 0.6, seed: int = 0) -> SimulatedSplit:
    """Simulate ``n`` sequences of ``seq_len`` bp. Same arguments, same data."""
    if seq_len < MIN_LENGTH:
        raise ValueError(
            f"seq_len={seq_len} is too short for the simulator's grammar (at least {MIN_LENGTH})"
        )
    rng = np.random.default_rng(seed)
    seqs = rng.choice(4, size=(n, seq_len), p=BACKGROUND).astype(np.uint8)
    occupied = np.zeros((n, seq_len + 1), dtype=np.int32)  # cumulative count of occupied positions
    sites: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    for name, (p_any, mean_sites, window) in _PLANTING.items():
        probs = motif_probabilities(name, SITE_SHARPNESS)
        width = len(probs)
        lo = int(window[0] * seq_len)
        hi = min(int(window[1] * seq_len), seq_len - width)
        counts = np.where(rng.random(n) < p_any, 1 + rng.poisson(mean_sites - 1, n), 0)
        sites[name] = []
        for round_ in range(int(counts.max(initial=0))):
            rows = np.flatnonzero(counts > round_)
            starts = rng.integers(lo, hi + 1, size=len(rows))
            for _ in range(10):  # re-draw the starts that would overlap an earlier site
                clash = occupied[rows, starts + width] - occupied[rows, starts] > 0
                if not clash.any():
                    break
                starts[clash] = rng.integers(lo, hi + 1, size=int(clash.sum()))
            ok = occupied[rows, starts + width] - occupied[rows, starts] == 0
            rows, starts = rows[ok], starts[ok]
            forward = rng.random(len(rows)) < 0.5
            bases = _sample_motif(rng, probs, len(rows))
            bases[~forward] = (3 - bases[~forward])[:, ::-1]  # reverse complement
            cols = starts[:, None] + np.arange(width)
            seqs[rows[:, None], cols] = bases
            mark = np.zeros((len(rows), seq_len), dtype=np.int32)
            mark[np.arange(len(rows))[:, None], cols] = 1
            occupied[rows, 1:] += np.cumsum(mark, axis=1)
            sites[name].append((rows, starts, forward))

    activity = _activity(sites, n, seq_len)
    noisy = activity + rng.normal(0.0, noise_std, n)
    offsets = np.arange(n + 1, dtype=np.int64) * seq_len
    data = RaggedStore(seqs.reshape(-1), offsets, noisy.astype(np.float32), f"simulator(seed={seed})")
    return SimulatedSplit(data, activity)


def _activity(sites, n: int, seq_len: int) -> np.ndarray:
    activity = np.zeros(n)
    for rows, _, _ in sites["GATA1"]:
        np.add.at(activity, rows, 1.0)
    for rows, _, _ in sites["CEBPB"]:
        np.add.at(activity, rows, -0.8)
    spi1_width = len(JASPAR_COUNTS["SPI1"][1])
    for rows, starts, _ in sites["SPI1"]:
        distance_to_end = seq_len - (starts + spi1_width)
        np.add.at(activity, rows, 1.6 * np.exp(-distance_to_end / 60.0))
    for rows, _, forward in sites["NFYA"]:
        np.add.at(activity, rows, np.where(forward, 1.0, 0.0))
    ctcf_end = np.full(n, -1)
    foxa1_start = np.full(n, -1)
    ctcf_width = len(JASPAR_COUNTS["CTCF"][1])
    for rows, starts, _ in sites["CTCF"]:
        np.add.at(activity, rows, 0.2)
        ctcf_end[rows] = np.where(
            ctcf_end[rows] < 0, starts + ctcf_width, np.minimum(ctcf_end[rows], starts + ctcf_width)
        )
    for rows, starts, _ in sites["FOXA1"]:
        np.add.at(activity, rows, 0.2)
        foxa1_start[rows] = np.maximum(foxa1_start[rows], starts)
    together = (ctcf_end >= 0) & (foxa1_start >= 0) & (foxa1_start - ctcf_end > INTERACTION_GAP)
    activity[together] += 1.5
    return activity


def simulate_splits(
    n_train: int, n_val: int, n_test: int, seq_len: int = 250, noise_std: float = 0.7, seed: int = 0
) -> dict[str, SimulatedSplit]:
    """Train, validation and test splits of one benchmark: independent draws, each deterministic by seed."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {
        name: simulate(n, seq_len, noise_std, seed=seed * 3 + k) for k, (name, n) in enumerate(sizes.items())
    }


def noise_ceiling(split: SimulatedSplit) -> float:
    """Pearson r between the noiseless and the noisy labels of a split."""
    return float(np.corrcoef(split.noiseless, split.data.labels.astype(np.float64))[0, 1])
