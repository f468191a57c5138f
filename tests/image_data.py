"""Small image data for the image tests: Fashion-MNIST-shaped IDX files and class folders, in a folder the test owns."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

VISION = Path(__file__).resolve().parents[1] / "experiments" / "vision"


def write_idx(path, array: np.ndarray, magic_type: int = 0x08, compress: bool = True) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def fake_fashion_mnist(root, n_train=60, n_test=20, seed=0):
    """Class k is an image whose row band k is bright, so a model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k + 4 : 2 * k + 6] = 250
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def write_folder(root, classes=("cat", "dog"), per_class=4, size=12, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray(rng.integers(0, 255, shape).astype(np.uint8), mode=mode).save(
                root / c / f"{i}.png"
            )
    return root


def image_args(tmp_path, *models):
    """Options for a vision config on tiny fake Fashion-MNIST, CSV logs only."""
    args = ["--config", str(VISION / "base.yaml")]
    for m in models:
        args += ["--config", str(VISION / m)]
    return args + [
        f"--data.root={fake_fashion_mnist(tmp_path / 'fm')}",
        "--data.download=false",
        "--data.batch_size=8",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        "--trainer.enable_progress_bar=false",
    ]
