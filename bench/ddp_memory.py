"""Index memory under DDP: does a process's memory grow with the number of sequences it is sharded?

Two encoded DNA folders (``codes.npy``/``offsets.npy``/``labels.npy``, memory-mapped) of 1 M and 10 M
sequences of 8 bases; for each, a 2-process gloo DDP epoch of ``DNADataModule`` (held-out splits, training
order, the ranks' shards, evaluation) with a model too small to matter. Each process samples its private
anonymous memory (``RssAnon``: what index lists would take; memory-mapped data pages are file-backed and do
not count) before training and after every batch. The growth from 1 M to 10 M sequences, divided by the 9 M
sequences added, is the index memory per sequence (while training, and since before the datamodule's setup); numpy's ``permutation`` of the epoch alone would be 8
bytes. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LENGTH, BATCH = 8, 4096
SIZES = (1_000_000, 10_000_000)


def rss_anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def write_folder(folder: Path, n: int) -> None:
    """An encoded folder of ``n`` random sequences, written a piece at a time as 'data encode' writes one."""
    from datamodules.dna_io import ENCODED_FILES
    from datamodules.storage import StoreWriter

    writer, rng, piece = (
        StoreWriter(folder, np.uint8, np.float32, ENCODED_FILES),
        np.random.default_rng(0),
        2**21,
    )
    for start in range(0, n, piece):
        rows = min(piece, n - start)
        codes = rng.integers(0, 4, rows * LENGTH, dtype=np.uint8)
        writer.append(codes, np.full(rows, LENGTH), rng.normal(size=rows).astype(np.float32))
    writer.close()


def worker(folder: str, out: str) -> None:
    """One DDP run (Lightning launches the second process by running this script again)."""
    import lightning as L
    import torch

    from datamodules.dna import DNADataModule
    from lit_models import DilatedCNN, PredictionTask

    torch.set_num_threads(1)
    start = rss_anon()  # after the imports, before the datamodule exists

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.before, self.peak, self.batches = rss_anon(), rss_anon(), 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.peak, self.batches = max(self.peak, rss_anon()), self.batches + 1

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.peak = max(self.peak, rss_anon())

        def on_train_end(self, trainer, pl_module):
            record = {
                "rank": trainer.global_rank,
                "start": start,
                "before": self.before,
                "peak": self.peak,
                "batches": self.batches,
            }
            Path(f"{out}.rank{trainer.global_rank}.json").write_text(json.dumps(record))

    L.seed_everything(0)
    data = DNADataModule(train_path=folder, val_fraction=0.001, test_fraction=0.001, batch_size=BATCH)
    net = DilatedCNN(4, 1, channels=4, stem_kernel_size=3, stem_pool_size=1, num_blocks=1)
    task = PredictionTask(net, target_mean=0.0, target_std=1.0, unused_parameters="ignore")
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[Probe()],
    )  # fmt: skip
    trainer.fit(task, datamodule=data)


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            folder, out = Path(tmp) / f"n{n}", Path(tmp) / f"n{n}"
            write_folder(folder, n)
            start = time.perf_counter()
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            done = subprocess.run([sys.executable, __file__, "--worker", str(folder), str(out)], env=env,
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            ranks = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(2)]
            results[n] = {
                "seconds": round(time.perf_counter() - start, 1),
                "batches_per_rank": ranks[0]["batches"],
                "growth_bytes": [r["peak"] - r["before"] for r in ranks],
                "growth_from_start_bytes": [r["peak"] - r["start"] for r in ranks],
                "peak_rss_anon_mb": [round(r["peak"] / 2**20, 1) for r in ranks],
            }
    small, large = (results[n] for n in SIZES)

    def per_sequence(key: str) -> list[float]:
        return [
            round((b - a) / (SIZES[1] - SIZES[0]), 3) for a, b in zip(small[key], large[key], strict=True)
        ]

    print(
        json.dumps(
            {
                "benchmark": "ddp_memory",
                "sequences": list(SIZES),
                "processes": 2,
                "runs": {str(n): r for n, r in results.items()},
                # While training (order, shards, batches), and everything since the datamodule was made
                # (its setup too: held-out splits, lengths for bucketing, labels' statistics).
                "index_bytes_per_sequence": per_sequence("growth_bytes"),
                "bytes_per_sequence_from_setup": per_sequence("growth_from_start_bytes"),
                "numpy_permutation_bytes_per_sequence": 8,
                "target": "does not grow with the data (about 0)",
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
