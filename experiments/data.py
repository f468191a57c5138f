"""``python -m experiments data``: fetch the real benchmark, or write the simulated one as files.

``sortseq``: the lac-promoter Sort-Seq data shipped inside the PyPI package ``mavenn`` (never imported: it
needs TensorFlow). The wheel is fetched through pip into a cache and the CSV read out of it; the label is
the mean sort bin, sum_i(i * ct_i) / sum_i(ct_i), and the package's own train/validation/test split is kept.
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.dna_io import DataError, write_text
from datamodules.dna_simulator import noise_ceiling, simulate_splits
from datamodules.files import write_atomic

MAVENN = "mavenn==1.1.4"
SORTSEQ_MEMBER = "mavenn/examples/datasets/sortseq_data.csv.gz"
SPLITS = {"training": "train", "validation": "val", "test": "test"}


def fetch_wheel(requirement: str, cache: Path) -> Path:
    """Download one wheel (no dependencies) into ``cache`` unless it is there already."""
    name = requirement.split("==")[0]
    found = sorted(cache.glob(f"{name}-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        requirement,
        "-d",
        str(cache),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(cache.glob(f"{name}-*.whl"))
    if result.returncode != 0 or not found:
        raise DataError(
            f"could not download {requirement} from the package registry: {result.stderr.strip()[-400:]}"
        )
    return found[-1]


def sortseq_frames(wheel: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(SORTSEQ_MEMBER)
    frame = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    counts = frame[[f"ct_{i}" for i in range(10)]].to_numpy(dtype=np.float64)
    total = counts.sum(1)
    frame = frame[total > 0]
    label = (counts[total > 0] * np.arange(10)).sum(1) / total[total > 0]
    frame = pd.DataFrame({"sequence": frame["x"].to_numpy(), "label": label, "set": frame["set"].to_numpy()})
    return {ours: frame[frame["set"] == theirs][["sequence", "label"]] for theirs, ours in SPLITS.items()}


def write_sortseq(out: Path, cache: Path) -> dict[str, int]:
    frames = sortseq_frames(fetch_wheel(MAVENN, cache))
    for split, frame in frames.items():
        write_atomic(out / f"{split}.tsv", frame.to_csv(sep="\t", index=False, float_format="%.6g"))
    return {split: len(frame) for split, frame in frames.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments data")
    sub = parser.add_subparsers(dest="dataset", required=True)
    p = sub.add_parser("sortseq", help="lac-promoter Sort-Seq (from the mavenn wheel) as train/val/test TSV")
    p.add_argument("--out", default="data/sortseq", help="output folder (default: data/sortseq)")
    p.add_argument(
        "--cache", default=str(Path.home() / ".cache" / "archbench" / "wheels"), help="wheel cache"
    )
    p = sub.add_parser("simulate", help="the built-in benchmark as files in the course's format")
    p.add_argument("--out", default="data/simulated", help="output folder (default: data/simulated)")
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-val", type=int, default=2_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--seq-len", type=int, default=250)
    p.add_argument("--noise-std", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.dataset == "sortseq":
        sizes = write_sortseq(out, Path(args.cache))
        print(f"sortseq: {sizes} sequences -> {out}/{{train,val,test}}.tsv")
        return
    splits = simulate_splits(args.n_train, args.n_val, args.n_test, args.seq_len, args.noise_std, args.seed)
    for split, sim in splits.items():
        write_text(out / f"{split}.txt", sim.data)
    print(f"noise ceiling (Pearson r, noiseless vs noisy test labels): {noise_ceiling(splits['test']):.4f}")
    print(f"simulated: {args.n_train}/{args.n_val}/{args.n_test} sequences -> {out}/{{train,val,test}}.txt")
