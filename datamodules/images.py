"""Images for classifiers: ``ImageDataModule`` (Fashion-MNIST IDX files, a folder of class folders, or a
Hugging Face image dataset), with timm's transforms, and optionally each image as a sequence of patches.

Transforms come from timm (``resolve_data_config`` / ``create_transform``): for a timm model (one with a
``pretrained_cfg``) its input size, mean/std, interpolation and crop; for the project's own nets the data's
native size and its own mean/std. A grey image is made RGB when the model expects 3 channels.

A batch is a dict: ``x`` (B, C, H, W) float, ``y`` (B,) class ids; with ``patch_size`` > 0, ``x`` is
(B, N, P*P*C) (row-major patches, each flattened channel-first) and ``lengths`` (B,) = N, so the sequence
models (RNN, LSTM, Transformer) read images unchanged.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.sampling import ClassificationData, SplitLoaders, make_loader

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
class Split:
    """Either in-memory images (uint8, (N, H, W) or (N, H, W, C)) or image files; and class ids."""

    labels: np.ndarray
    images: np.ndarray | None = None
    files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        return Split(
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


def read_folder(root: Path, classes: list[str] | None = None) -> tuple[Split, list[str]]:
    """``root/CLASS/*.png`` (any common image suffix) -> a Split of files; classes sorted unless given."""
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
    return Split(np.array(labels, dtype=np.int64), files=files), classes


def _verify_image(path: Path) -> None:
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None


class ImageDataset(Dataset):
    def __init__(self, split: Split, transform, rgb: bool):
        self.split, self.transform, self.rgb = split, transform, rgb

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.split.image(i)
        image = image.convert("RGB" if self.rgb else "L")
        return self.transform(image), int(self.split.labels[i])


class ImageDataModule(SplitLoaders, ClassificationData, L.LightningDataModule):
    def __init__(
        self,
        source: Literal["fashion_mnist", "folder", "hub"] = "fashion_mnist",
        root: str = DEFAULT_ROOT,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        dataset: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        train_size: int | None = None,
        labels: list[str] | None = None,
        input_config: dict | None = None,
        img_size: int | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: bool = False,
        hflip: float = 0.5,
        scale: tuple[float, float] = (0.5, 1.0),
        auto_augment: str | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_label_smoothing: float = 0.1,
        patch_size: int = 0,
        batch_size: int = 128,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        download: bool = True,
    ):
        """
        Args:
            source: ``fashion_mnist`` (IDX files in ``root``), ``folder`` (``train_path`` etc. hold one
                subfolder per class) or ``hub`` (a Hugging Face image dataset, ``dataset``).
            root: Fashion-MNIST folder with the four IDX files (gzip or not). If they are not in the default
                folder: the Debian package's (/usr/share/datasets/fashion-mnist), else torchvision's download
                (connected machines, with ``download``). ``python -m experiments data fashion_mnist`` fills it.
            train_path: ``folder``: the training folder; ``hub``: a local data file or folder for
                ``datasets.load_dataset("imagefolder")`` (optional).
            val_path: Validation folder. Empty: ``val_fraction`` of the training images (seeded).
            test_path: Test folder (``folder`` source).
            dataset: ``hub``: a dataset name (e.g. ``fashion_mnist``, ``cifar10``; needs a connection).
            image_column: ``hub``: the image column.
            label_column: ``hub``: the label column.
            val_fraction: Share of the training images held out for validation when there is no validation split.
            split_seed: Seed of the held-out split and the subset.
            train_size: Train on a seeded subset of this many images.
            labels: Keep only these classes (names, as in the data), numbered in this order: e.g. pre-train
                on five Fashion-MNIST classes and fine-tune on the other five. Empty: every class.
            input_config: The input a pretrained model expects (timm's data config: ``input_size``, ``mean``,
                ``std``, ``interpolation``, ``crop_pct``); linked from a ``TimmNet``'s config. Empty: the data's
                own size and statistics.
            img_size: Side of the images the model sees. Empty: ``input_config``'s, else the data's.
            mean: Normalisation mean per channel. Empty: ``input_config``'s, else the training images' own.
            std: Normalisation std per channel. Empty: as ``mean``.
            augment: Training augmentation: random resized crop (``scale``), flips (``hflip``), ``auto_augment``.
            hflip: Probability of a horizontal flip when augmenting.
            scale: Area range of the random resized crop when augmenting.
            auto_augment: timm's policy string, e.g. ``rand-m9-mstd0.5`` (RandAugment); needs ``augment``.
            mixup_alpha: Above 0, timm's ``Mixup`` blends training images (and their targets) with this alpha.
            cutmix_alpha: Above 0, CutMix patches with this alpha (with mixup too, one of the two per batch).
            mixup_label_smoothing: Label smoothing of the soft targets mixup/cutmix make (otherwise use the
                model's ``label_smoothing``).
            patch_size: Above 0, serve each image as a sequence of P x P patches, (N, P*P*C), with lengths.
            batch_size: Images per batch (per device).
            global_batch_size: Examples per optimizer step over all processes and accumulated batches
                (split into ``batch_size`` per device; it must divide): the optimisation stays the same when
                the device count changes.
            num_workers: DataLoader worker processes.
            download: ``fashion_mnist`` only: allow torchvision's download when the files are nowhere local.
        """
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"data.val_fraction: {val_fraction} is outside [0, 1)")
        self.save_hyperparameters()
        self.splits: dict[str, Split] | None = None
        self._labels: list[str] = []
        self._native: tuple[int, int, int] | None = None  # (channels, height, width) of the data
        self._stats: tuple | None = None  # the training images' mean and std
        self._mixup = None

    # --- sources ----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Split]:
        if self.splits is not None:
            return self.splits
        hp = self.hparams
        if hp.source == "fashion_mnist":
            arrays = read_fashion_mnist(self._fashion_mnist_root())
            splits = {name: Split(labels, images=images) for name, (images, labels) in arrays.items()}
            self._labels = list(FASHION_MNIST_CLASSES)
        elif hp.source == "folder":
            if not hp.train_path:
                raise DataError("data.train_path: the folder source needs a training folder")
            splits = {}
            splits["train"], self._labels = read_folder(Path(hp.train_path))
            for name in ("val", "test"):
                if hp[f"{name}_path"]:
                    splits[name], _ = read_folder(Path(hp[f"{name}_path"]), self._labels)
        else:
            splits = self._load_hub()
        if "test" not in splits:
            raise DataError(f"data: the {hp.source} source has no test split (give test_path)")
        if hp.labels:
            splits = self._keep_classes(splits, list(hp.labels))
        order = np.random.default_rng(hp.split_seed).permutation(len(splits["train"]))
        if "val" not in splits:
            k = int(round(hp.val_fraction * len(order)))
            splits["val"], order = splits["train"].subset(np.sort(order[:k])), order[k:]
        if hp.train_size is not None and hp.train_size < len(order):
            order = order[: hp.train_size]
        splits["train"] = splits["train"].subset(np.sort(order))
        first = splits["train"].image(0)
        channels = len(first.getbands()) if first.mode not in ("P", "1") else 1
        self._native = (1 if channels == 1 else 3, first.height, first.width)
        self.splits = splits
        return splits

    def _keep_classes(self, splits: dict[str, Split], keep: list[str]) -> dict[str, Split]:
        unknown = [c for c in keep if c not in self._labels]
        if unknown or len(set(keep)) != len(keep):
            problem = f"unknown class {unknown[0]!r}" if unknown else "a class is listed twice"
            raise DataError(f"data.labels: {problem} (the data's classes: {', '.join(self._labels)})")
        new_id = np.full(len(self._labels), -1, dtype=np.int64)
        new_id[[self._labels.index(c) for c in keep]] = np.arange(len(keep))
        kept = {}
        for name, split in splits.items():
            part = split.subset(np.flatnonzero(new_id[split.labels] >= 0))
            kept[name] = Split(new_id[part.labels], part.images, part.files)
        self._labels = keep
        return kept

    def _fashion_mnist_root(self) -> Path:
        root = Path(self.hparams.root)
        if all(
            any((root / (stem + s)).is_file() for s in ("", ".gz"))
            for pair in IDX_FILES.values()
            for stem in pair
        ):
            return root
        if DEBIAN_FASHION_MNIST.is_dir() and self.hparams.root == DEFAULT_ROOT:  # apt-get install'ed
            return DEBIAN_FASHION_MNIST
        if self.hparams.download:
            from torchvision.datasets import FashionMNIST

            try:
                FashionMNIST(str(root / "torchvision"), download=True)
            except Exception as err:  # no network: say what to do
                raise DataError(
                    f"data.root: Fashion-MNIST is not in {root} and could not be downloaded ({str(err)[:120]}); "
                    "run: python -m experiments data fashion_mnist"
                ) from None
            return root / "torchvision" / "FashionMNIST" / "raw"
        raise DataError(
            f"data.root: Fashion-MNIST IDX files not found in {root}; run: python -m experiments data fashion_mnist"
        )

    def _load_hub(self) -> dict[str, Split]:
        import datasets

        hp = self.hparams
        try:
            if hp.dataset:
                loaded = datasets.load_dataset(hp.dataset)
            elif hp.train_path:
                loaded = datasets.load_dataset("imagefolder", data_dir=hp.train_path)
            else:
                raise DataError("data: the hub source needs data.dataset (a hub name) or data.train_path")
        except (ConnectionError, FileNotFoundError, ValueError) as err:
            raise DataError(
                f"data.dataset: {hp.dataset or hp.train_path!r} could not be loaded: {str(err)[:200]}"
            ) from None
        named = {"train": "train", "val": "validation", "test": "test"}
        splits = {}
        for ours, theirs in named.items():
            if theirs not in loaded:
                continue
            data = loaded[theirs]
            for column in (hp.image_column, hp.label_column):
                if column not in data.column_names:
                    raise DataError(
                        f"{hp.dataset} [{theirs}]: no column {column!r} (columns: {', '.join(data.column_names)})"
                    )
            images = np.stack([np.asarray(im) for im in data[hp.image_column]])
            splits[ours] = Split(np.asarray(data[hp.label_column], dtype=np.int64), images=images)
        feature = loaded["train"].features[hp.label_column]
        self._labels = list(getattr(feature, "names", [])) or [
            str(i) for i in range(int(splits["train"].labels.max()) + 1)
        ]
        for name, split in splits.items():
            bad = np.flatnonzero((split.labels < 0) | (split.labels >= len(self._labels)))
            if len(bad):
                raise DataError(
                    f"{hp.dataset} [{name}]: row {bad[0] + 1}: label {split.labels[bad[0]]} outside 0..{len(self._labels) - 1}"
                )
        return splits

    # --- what the model sees ----------------------------------------------------------------------------

    def _config(self) -> dict:
        """timm data config: the model's (when it is a timm model), else the data's own size and statistics."""
        self._load()
        hp = self.hparams
        channels, height, _ = self._native
        config = dict(self.hparams.input_config or {})
        if not config:
            config = {"input_size": (channels, height, height), "interpolation": "bilinear", "crop_pct": 1.0}
            config["mean"], config["std"] = self._statistics(channels)
        if hp.img_size:
            config["input_size"] = (config["input_size"][0], hp.img_size, hp.img_size)
        if hp.mean is not None:
            config["mean"] = tuple(hp.mean)
        if hp.std is not None:
            config["std"] = tuple(hp.std)
        return config

    @property
    def data_config(self) -> dict:
        """The input the model sees: timm's data config (input size, mean/std, interpolation, crop)."""
        return self._config()

    def _statistics(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std of (up to 10,000) training images, computed once: every size the CLI links reads them."""
        if self._stats is None:
            self._stats = self._compute_statistics(channels)
        return self._stats

    def _compute_statistics(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        train = self._load()["train"]
        if train.images is not None:
            pixels = train.images[: min(len(train), 10_000)].astype(np.float64) / 255.0
            axes = tuple(range(pixels.ndim - 1)) if pixels.ndim == 4 else None
            mean, std = pixels.mean(axis=axes), pixels.std(axis=axes)
            mean, std = np.atleast_1d(mean), np.atleast_1d(std)
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
        return (0.5,) * channels, (0.5,) * channels

    @property
    def in_channels(self) -> int:
        channels, size = self._config()["input_size"][0], self.hparams.patch_size
        return channels * size * size if size else channels

    @property
    def img_size(self) -> int:
        return self._config()["input_size"][1]

    @property
    def seq_len(self) -> int | None:
        p = self.hparams.patch_size
        return (self.img_size // p) ** 2 if p else None

    @property
    def vocab_size(self) -> int:
        return 0

    @property
    def labels(self) -> list[str]:
        """Class names in id order."""
        self._load()
        return list(self._labels)

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def transform(self, train: bool):
        from timm.data import create_transform

        config, hp = self._config(), self.hparams
        augment = train and hp.augment
        return create_transform(
            input_size=config["input_size"],
            is_training=augment,
            scale=hp.scale,
            hflip=hp.hflip,
            color_jitter=None,
            auto_augment=hp.auto_augment if augment else None,
            interpolation=config.get("interpolation", "bilinear"),
            mean=config["mean"],
            std=config["std"],
            crop_pct=1.0 if not augment and not self.hparams.input_config else config.get("crop_pct"),
        )

    def setup(self, stage: str | None = None) -> None:
        self._load()
        hp = self.hparams
        if hp.patch_size and self.img_size % hp.patch_size:
            raise DataError(
                f"data.patch_size: {hp.patch_size} does not divide the image size {self.img_size}"
            )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self._load()[split]
        rgb = self._config()["input_size"][0] == 3
        dataset = ImageDataset(data, self.transform(train), rgb)
        # timm's Mixup pairs images within a batch: an even size
        return make_loader(dataset, self.hparams, self.trainer, train, drop_last=train and self._mixing)

    @property
    def _mixing(self) -> bool:
        return self.hparams.mixup_alpha > 0 or self.hparams.cutmix_alpha > 0

    def on_after_batch_transfer(self, batch, dataloader_idx: int) -> dict:
        x, y = batch
        if self._mixing and self.trainer is not None and self.trainer.training:
            if self._mixup is None:
                from timm.data import Mixup

                hp = self.hparams
                self._mixup = Mixup(
                    mixup_alpha=hp.mixup_alpha,
                    cutmix_alpha=hp.cutmix_alpha,
                    label_smoothing=hp.mixup_label_smoothing,
                    num_classes=self.num_outputs,
                )
            if len(x) % 2 == 0:
                x, y = self._mixup(x, y)  # y becomes soft targets (B, K); the task's loss takes them
        out = {"x": x, "y": y}
        p = self.hparams.patch_size
        if p:
            from lit_models.vit import patchify

            out["x"] = patchify(x, p)
            out["lengths"] = torch.full((len(x),), out["x"].shape[1], dtype=torch.long, device=x.device)
        return out
