"""Reading + encoding a 20,000 x 250 bp file: the project's reader vs the course's per-character encoding.

The course's way: for each line, a dict lookup per base into a list of lists, then one float tensor
(16 bytes per base). The project's: one vectorized pass into one byte per base (one-hot happens per batch,
on the device). Both read the same file in the same run; the median of 3 alternating repeats is compared.
Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from datamodules.dna import one_hot
from datamodules.dna_io import read_dna, write_text
from datamodules.dna_simulator import simulate

N, LENGTH, REPEATS = 20_000, 250, 3
COURSE_CODE = {
    "A": [1.0, 0.0, 0.0, 0.0],
    "C": [0.0, 1.0, 0.0, 0.0],
    "G": [0.0, 0.0, 1.0, 0.0],
    "T": [0.0, 0.0, 0.0, 1.0],
    "N": [0.0, 0.0, 0.0, 0.0],
}


def course_encoding(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    sequences, labels = [], []
    with open(path) as f:
        for line in f:
            seq, label = line.split()
            sequences.append([COURSE_CODE[base] for base in seq.upper()])
            labels.append(float(label))
    return torch.tensor(sequences, dtype=torch.float32), torch.tensor(labels)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        write_text(path, simulate(N, LENGTH, seed=0).data)
        ours_s, course_s = [], []
        for _ in range(REPEATS):
            t = time.perf_counter()
            ours = read_dna(path)
            ours_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            course_x, course_y = course_encoding(path)
            course_s.append(time.perf_counter() - t)
    match = bool(
        torch.equal(one_hot(torch.from_numpy(ours.values.reshape(N, LENGTH))), course_x)
        and torch.allclose(torch.from_numpy(ours.labels), course_y)
    )
    ours_t, course_t = statistics.median(ours_s), statistics.median(course_s)
    print(
        json.dumps(
            {
                "benchmark": "dna_encoding",
                "sequences": N,
                "length": LENGTH,
                "ours_seconds": round(ours_t, 4),
                "course_seconds": round(course_t, 4),
                "speedup": round(course_t / ours_t, 1),
                "bytes_per_base": ours.values.nbytes / (N * LENGTH),
                "course_bytes_per_base": course_x.element_size() * course_x.shape[-1],
                "same_encoding": match,
            }
        )
    )


if __name__ == "__main__":
    main()
