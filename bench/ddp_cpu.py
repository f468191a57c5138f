"""DDP on the CPU: training samples/s of 2 gloo processes against 1 process, same model (the default DNA CNN),
same per-process batch and steps, through the ``ddp_cpu`` preset. Each process gets an equal share of the
machine's cores (torch threads = cores / processes), so the ratio measures what a second process adds.

    python bench/ddp_cpu.py [--steps 60] [--batch 64]

Prints one JSON line: samples/s of each run (all processes together), samples/s per process, the scaling
efficiency ``samples/s(2) / (2 x samples/s(1))`` (1.0 when a second process adds as much as the first: it needs
a second machine's worth of cores), and ``samples/s(2) / samples/s(1)``, what splitting the same cores over two
processes costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(devices: int, steps: int, batch: int, out: str) -> None:
    import torch
    from step_timer import StepTimer

    from experiments.cli import ExperimentCLI

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    args = [
        "--config", str(ROOT / "experiments" / "dna" / "cnn.yaml"),
        "--trainer", str(ROOT / "experiments" / "trainer" / "ddp_cpu.yaml"),
        f"--trainer.devices={devices}", f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
        "--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={out}",
        f"--data.batch_size={batch}", f"--data.simulation.n_train={steps * batch * devices}",
        "--data.simulation.n_val=64", "--data.simulation.n_test=64", "--model.unused_parameters=ignore",
    ]  # fmt: skip
    with warnings.catch_warnings():  # args given while sys.argv holds this script's own options: intended
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = ExperimentCLI(args=args, run=False)
    stats = StepTimer(batch, warmup=10)
    cli.trainer.callbacks.append(stats)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if cli.trainer.is_global_zero:
        Path(out, "result.json").write_text(json.dumps({"samples_per_s": stats.throughput}))


def run(devices: int, steps: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(devices),
            "--steps",
            str(steps),
            "--batch",
            str(batch),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": out}
        subprocess.run([*cmd, "--out", out], check=True, env=env, capture_output=True, text=True)
        return json.loads(Path(out, "result.json").read_text())["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.batch, args.out)
        return
    one = run(1, args.steps, args.batch)
    two = run(2, args.steps, args.batch)
    print(
        json.dumps(
            {
                "bench": "ddp_cpu",
                "cores": os.cpu_count(),
                "steps": args.steps,
                "batch_per_process": args.batch,
                "samples_per_s_1proc": round(one, 1),
                "samples_per_s_2proc": round(two, 1),
                "samples_per_s_per_process_2proc": round(two / 2, 1),
                "scaling_efficiency": round(two / (2 * one), 3),
                # the same cores shared by 2 processes instead of 1: what DDP costs or gains on one machine
                "total_ratio_same_cores": round(two / one, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
