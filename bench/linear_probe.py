"""A linear probe with the backbone's features cached once vs recomputed every epoch: time per epoch.

The DINOv2 ViT-S/14 probe of ``experiments/vision/dinov2_linear_probe.yaml`` (the mapped weights where
``python -m experiments data dinov2_small`` wrote them, else the same architecture from random weights: the
time is the same), on a seeded subset of Fashion-MNIST at 56 px, trained by the Lightning Trainer for a few
epochs with validation, once with ``cache_features`` and once without, in this one process. Reported: each
epoch's wall time (training and validation), the first epoch apart (where the cache fills) from the later
ones, the ratio of the later epochs' medians, and how far apart the two runs' classifier weights end (a
rounding difference at most: the cache changes the cost, not the result). Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from experiments.cli import ExperimentCLI

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "data" / "pretrained" / "dinov2_small.safetensors"
TRAIN, VAL, EPOCHS, SEED = 1000, 500, 4, 0


class EpochClock(Callback):
    """Wall time from one training epoch's start to the end of its validation."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.times.append(time.perf_counter() - self._start)


def run(cache: bool, out: Path) -> tuple[list[float], torch.Tensor]:
    args = ["--config", str(ROOT / "experiments/vision/base.yaml"),
            "--config", str(ROOT / "experiments/vision/dinov2_linear_probe.yaml"),
            f"--model.net.init_args.cache_features={str(cache).lower()}",
            f"--data.train_size={TRAIN}", f"--data.val_size={VAL}", "--data.batch_size=64",
            f"--trainer.max_epochs={EPOCHS}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0", f"--trainer.default_root_dir={out}",
            f"--seed_everything={SEED}"]  # fmt: skip
    if not WEIGHTS.is_file():
        args += ["--model.net.init_args.weights_file=null"]
    cli = ExperimentCLI(args=args, run=False)
    clock = EpochClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return clock.times, cli.model.net.model.get_classifier().weight.detach().clone()


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cached, w_cached = run(True, Path(tmp) / "cached")
        plain, w_plain = run(False, Path(tmp) / "plain")
    later_cached, later_plain = statistics.median(cached[1:]), statistics.median(plain[1:])
    print(json.dumps({
        "benchmark": "linear_probe",
        "model": "vit_small_patch14_dinov2 " + ("(mapped DINOv2 weights)" if WEIGHTS.is_file() else "(random weights)"),
        "data": f"Fashion-MNIST, {TRAIN} train + {VAL} val images at 56 px, batch 64, {EPOCHS} epochs",
        "threads": torch.get_num_threads(),
        "epoch_s_cached": [round(t, 2) for t in cached],
        "epoch_s_recomputed": [round(t, 2) for t in plain],
        "later_epoch_ratio_cached_over_recomputed": round(later_cached / later_plain, 3),
        "classifier_max_abs_diff": float((w_cached - w_plain).abs().max()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
