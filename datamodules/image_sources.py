"""Where images come from: Fashion-MNIST's IDX files (checked: magic number, dimensions, size, labels), a
folder of class folders (every file's header checked up front), or a Hugging Face image dataset.

``read_folder`` walks the folders itself rather than through ``datasets``' imagefolder builder: that one
decodes images only when they are used (a corrupt file stops training mid-epoch instead of before it) and
drops an empty class folder without a word. The ``hub`` source uses ``datasets`` (its imagefolder for local
files too).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from archbench.errors import DataError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_ROOT = "data/fashion_mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX file (gzip or not) as a uint8 array; the magic number, dimensions and size are checked."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(
            f"{path}: not an unsigned-byte IDX file (magic number {raw[:4].hex() or 'missing'}, "
            f"expected 000008{expected_dims:02x})"
        )
    dims = raw[3]
    if dims != expected_dims:
        raise DataError(f"{path}: IDX file with {dims} dimensions, expected {expected_dims}")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({size} bytes) but the file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: {stem}(.gz) not found")


def read_fashion_mnist(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (N, 28, 28) uint8, labels (N,) int64), "test": ...} from the four IDX files."""
    out = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = _find_idx(root, images_stem), _find_idx(root, labels_stem)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1).astype(np.int64)
        if len(images) != len(labels):
            raise DataError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
        bad = np.flatnonzero(labels >= len(FASHION_MNIST_CLASSES))
        if len(bad):
            raise DataError(f"{labels_path}: label {labels[bad[0]]} at item {bad[0]} is outside 0..9")
        out[split] = (images, labels)
    return out


@dataclass
class ImageSplit:
    """Either in-memory images (uint8, (N, H, W) or (N, H, W, C)) or image files; and class ids."""

    labels: np.ndarray
    images: np.ndarray | None = None
    files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(
            self.labels[index],
            None if self.images is None else self.images[index],
            None if self.files is None else [self.files[i] for i in index],
        )

    def image(self, i: int) -> Image.Image:
        if self.images is not None:
            return Image.fromarray(self.images[i])
        return _open_image(self.files[i])


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None


def read_folder(root: Path, classes: list[str] | None = None) -> tuple[ImageSplit, list[str]]:
    """``root/CLASS/*.png`` (any common image suffix) -> an ImageSplit of files; classes sorted unless given."""
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected one subfolder per class)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not found:
        raise DataError(f"{root}: no class subfolders")
    classes = classes or found
    files, labels = [], []
    for name in found:
        if name not in classes:
            raise DataError(f"{root / name}: class {name!r} is not one of the training classes {classes}")
        images = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(
                f"{root / name}: empty class folder (no {', '.join(sorted(IMAGE_SUFFIXES))} files)"
            )
        for image in images:  # a header check of every file now, not a crash in the middle of training
            _verify_image(image)
        files += images
        labels += [classes.index(name)] * len(images)
    return ImageSplit(np.array(labels, dtype=np.int64), files=files), classes


def _verify_image(path: Path) -> None:
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None


def fashion_mnist_root(root: str, download: bool) -> Path:
    path = Path(root)
    if all(
        any((path / (stem + s)).is_file() for s in ("", ".gz"))
        for pair in IDX_FILES.values()
        for stem in pair
    ):
        return path
    if DEBIAN_FASHION_MNIST.is_dir() and root == DEFAULT_ROOT:  # apt-get install'ed
        return DEBIAN_FASHION_MNIST
    if download:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(path / "torchvision"), download=True)
        except Exception as err:  # no network: say what to do
            raise DataError(
                f"data.root: Fashion-MNIST is not in {path} and could not be downloaded ({str(err)[:120]}); "
                "run: python -m experiments data fashion_mnist"
            ) from None
        return path / "torchvision" / "FashionMNIST" / "raw"
    raise DataError(
        f"data.root: Fashion-MNIST IDX files not found in {path}; run: python -m experiments data fashion_mnist"
    )


def load_hub_images(
    dataset: str | None, train_path: str | None, image_column: str, label_column: str
) -> tuple[dict[str, ImageSplit], list[str]]:
    """A Hugging Face image dataset (a hub name, or local files through its imagefolder builder) as splits of
    in-memory images, and the class names."""
    import datasets

    name = dataset or train_path
    try:
        if dataset:
            loaded = datasets.load_dataset(dataset)
        elif train_path:
            loaded = datasets.load_dataset("imagefolder", data_dir=train_path)
        else:
            raise DataError("data: the hub source needs data.dataset (a hub name) or data.train_path")
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        raise DataError(f"data.dataset: {name!r} could not be loaded: {str(err)[:200]}") from None
    named = {"train": "train", "val": "validation", "test": "test"}
    splits = {}
    for ours, theirs in named.items():
        if theirs not in loaded:
            continue
        data = loaded[theirs]
        for column in (image_column, label_column):
            if column not in data.column_names:
                raise DataError(
                    f"{name} [{theirs}]: no column {column!r} (columns: {', '.join(data.column_names)})"
                )
        images = np.stack([np.asarray(im) for im in data[image_column]])
        splits[ours] = ImageSplit(np.asarray(data[label_column], dtype=np.int64), images=images)
    feature = loaded["train"].features[label_column]
    labels = list(getattr(feature, "names", [])) or [
        str(i) for i in range(int(splits["train"].labels.max()) + 1)
    ]
    for split_name, split in splits.items():
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= len(labels)))
        if len(bad):
            raise DataError(
                f"{name} [{split_name}]: row {bad[0] + 1}: label {split.labels[bad[0]]} outside 0..{len(labels) - 1}"
            )
    return splits, labels


def pixel_statistics(split: ImageSplit, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel of (up to 10,000) in-memory images in [0, 1]; 0.5 / 0.5 for image files."""
    if split.images is None:
        return (0.5,) * channels, (0.5,) * channels
    pixels = split.images[: min(len(split), 10_000)].astype(np.float64) / 255.0
    axes = tuple(range(pixels.ndim - 1)) if pixels.ndim == 4 else None
    mean, std = np.atleast_1d(pixels.mean(axis=axes)), np.atleast_1d(pixels.std(axis=axes))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
