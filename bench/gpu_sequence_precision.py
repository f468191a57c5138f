"""bf16-mixed against 32-bit training speed of the sequence models on a GPU: the DNA Transformer and LSTM
(``experiments/dna/transformer.yaml``, ``lstm.yaml``) through the CLI and Trainer as users run them, on the
built-in benchmark, samples/s over the same steps after 20 warm-up steps (validation off). Needs a CUDA GPU:
on a CPU-only machine it says so and exits 0. Prints one JSON line.

    python bench/gpu_sequence_precision.py [--steps 200] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from step_timer import StepTimer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def samples_per_second(model: str, precision: str, steps: int, batch: int) -> float:
    from experiments.cli import ExperimentCLI

    args = [
        "--config", str(ROOT / "experiments" / "dna" / f"{model}.yaml"),
        "--trainer", str(ROOT / "experiments" / "trainer" / "gpu.yaml"), f"--trainer.precision={precision}",
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--data.batch_size={batch}", f"--data.simulation.n_train={steps * batch}",
        "--data.simulation.n_val=256", "--data.simulation.n_test=256",
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = ExperimentCLI(args=args, run=False)
    timer = StepTimer(batch)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            json.dumps(
                {"bench": "gpu_sequence_precision", "skipped": "needs a CUDA GPU; this machine has none"}
            )
        )
        sys.exit(0)
    result = {"bench": "gpu_sequence_precision", "gpu": torch.cuda.get_device_name(), "batch": args.batch}
    for model in ("transformer", "lstm"):
        fp32 = samples_per_second(model, "32-true", args.steps, args.batch)
        bf16 = samples_per_second(model, "bf16-mixed", args.steps, args.batch)
        result[model] = {"fp32_samples_per_s": round(fp32, 1), "bf16_samples_per_s": round(bf16, 1),
                         "bf16_speedup": round(bf16 / fp32, 3)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
