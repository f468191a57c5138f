"""The same 4-run comparison (the DNA CNN and LSTM x 2 seeds, one short epoch each) with ``compare --launcher
sequential`` against ``--launcher local --devices 0,1`` (2 worker processes, one core each on 2 cores): wall-clock
seconds of each whole command (process start, runs, table) and their ratio, run alternately (sequential first).
The runs are small, so a run leaves part of a core idle (start-up, data, Python); that is what a second worker
fills. Prints one JSON line.

    python bench/compare_parallel.py [--repeats 1] [--n_train 4096] [--batch 32] [--models cnn lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DNA = ROOT / "experiments" / "dna"


def timed(
    folder: Path, launcher: list[str], name: str, run: list[str], models: list[str]
) -> tuple[float, dict]:
    spec = {"name": name, "seeds": 2, "out": str(folder / name), "metric": "test/pearson",
            "models": {m.upper(): str(DNA / f"{m}.yaml") for m in models}}  # fmt: skip
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments", "compare", "--config", str(config), *launcher, *run],
                   cwd=folder, env=env, check=True, capture_output=True)  # fmt: skip
    seconds = time.perf_counter() - start
    runs = json.loads((folder / name / "results.json").read_text())["runs"]
    return seconds, {(r["model"], r["seed"]): r["test"]["test/pearson"] for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n_train", type=int, default=4096, help="training sequences of each run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs=2, default=["cnn", "lstm"], help="two of experiments/dna/*.yaml")
    args = parser.parse_args()
    run = [f"--data.simulation.n_train={args.n_train}", "--data.simulation.n_val=256", "--data.simulation.n_test=256",
           f"--data.batch_size={args.batch}", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
    sequential, local, differences = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            s, a = timed(Path(tmp), [], f"sequential{k}", run, args.models)
            p, b = timed(
                Path(tmp), ["--launcher", "local", "--devices", "0,1"], f"local{k}", run, args.models
            )
            sequential.append(s)
            local.append(p)
            differences += [abs(a[key] - b[key]) for key in a]
    print(json.dumps({
        "bench": "compare_parallel", "models": args.models, "runs": 4, "cores": os.cpu_count(), "n_train": args.n_train, "batch": args.batch,
        "sequential_s": [round(s, 1) for s in sequential], "local_2_workers_s": [round(p, 1) for p in local],
        "wall_ratio": round(sum(local) / sum(sequential), 3), "max_test_pearson_difference": max(differences),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
