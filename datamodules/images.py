"""Images for classifiers: ``ImageDataModule`` (Fashion-MNIST IDX files, a folder of class folders, or a
Hugging Face image dataset; see ``image_sources``), with timm's transforms, and optionally each image as a
sequence of patches.

Transforms come from timm (``create_transform``): for a timm model the input it expects (``input_config``,
linked from the net's config: its input size, mean/std, interpolation and crop), for the project's own nets
the data's native size and its own mean/std. A grey image is made RGB when the model expects 3 channels.

The data's native input, from every training image (for files, from their headers, without decoding them):
3 channels if any image has colour (RGB, RGBA, CMYK, a palette with a colour entry), 1 only if all are grey;
the size is the most common one (a tie: the largest), so a few odd images are resized to the rest rather
than the rest to them (the largest would let one huge photo set the model's cost); non-square, its shorter side.

A batch is a dict: ``x`` (B, C, H, W) float, ``y`` (B,) class ids; with ``patch_size`` > 0, ``x`` is
(B, N, P*P*C) (row-major patches, each flattened channel-first) and ``lengths`` (B,) = N, so the sequence
models (RNN, LSTM, Transformer) read images unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError, first_line
from datamodules.image_sources import (
    DEFAULT_ROOT,
    FASHION_MNIST_CLASSES,
    ImageSplit,
    fashion_mnist_root,
    load_hub_images,
    native_shape,
    pixel_statistics,
    read_fashion_mnist,
    read_folder,
    read_images,
    shared_images,
)
from datamodules.sampling import (
    ClassificationData,
    SplitLoaders,
    check_loader_options,
    make_loader,
    per_device_batch_size,
)
from datamodules.splits import held_out_sizes, hold_out, seeded_subset
from datamodules.storage import say_shared


class ImageDataset(Dataset):
    def __init__(self, split: ImageSplit, transform, rgb: bool):
        self.split, self.transform, self.rgb = split, transform, rgb

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.split.image(i)
        image = image.convert("RGB" if self.rgb else "L")
        return self.transform(image), int(self.split.labels[i])


def _check_auto_augment(policy: str) -> None:
    """A policy timm's transforms take, or a DataError naming it: timm asserts on a misspelt one when the
    training loader is built (a bare AssertionError once the run has started)."""
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    build = (
        rand_augment_transform
        if policy.startswith("rand")
        else augment_and_mix_transform
        if policy.startswith("augmix")
        else auto_augment_transform
    )  # fmt: skip (timm's own dispatch)
    try:
        build(policy, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        said = first_line(err) if str(err).strip() else "not a policy timm knows"
        raise DataError(
            f"data.auto_augment: {policy!r}: {said} (timm's policies: e.g. rand-m9-mstd0.5, augmix-m5-w4-d2, "
            "original, v0)"
        ) from None


def _say_colour_read_as_grey(split: ImageSplit, channels: int) -> None:
    """Colour images given to a model of one channel (trained on grey images) are read as grey, their
    luminance: said, with how many and the first, rather than done unsaid (trial 23)."""
    if channels != 1 or split.headers is None:
        return
    colour = np.flatnonzero(split.headers[:, 0] == 1)
    if len(colour):
        rank_zero_warn(
            f"data.predict_path: {len(colour)} of {len(split)} images have colour (the first: {split.files[colour[0]]}); "
            "the model was trained on grey images, so they are read as grey (their luminance)"
        )


def _say_other_sizes(split: ImageSplit, height: int, width: int) -> None:
    """Images to predict of another size than the model was trained at, resized by their shorter side and
    centre-cropped to it: said as ``fit`` says it of training images (trial 32: a 64x50 image predicted unsaid)."""
    if split.headers is None:
        return
    other = np.flatnonzero((split.headers[:, 1] != height) | (split.headers[:, 2] != width))
    if len(other):
        rank_zero_warn(
            f"data.predict_path: {len(other)} of {len(split)} images are not {height}x{width} (the size the model was "
            f"trained at) and are resized by their shorter side and centre-cropped to it, e.g. {split.files[other[0]]}"
        )


class ImageDataModule(SplitLoaders, ClassificationData, L.LightningDataModule):
    SAVED = ("labels", "data_config")

    def __init__(
        self,
        source: Literal["fashion_mnist", "folder", "hub"] = "fashion_mnist",
        root: str = DEFAULT_ROOT,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        checkpoint: str | None = None,
        dataset: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
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
        check_duplicates: bool = True,
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
            test_path: Test folder (``folder`` source). Empty, and for a source without a test split:
                ``test_fraction`` of the training images (seeded).
            predict_path: A folder of images for ``predict`` (directly in it, or in subfolders; labels unused).
                Empty: ``predict`` reads the test split. The training data is read too (its classes, size and
                statistics set the input) unless ``checkpoint`` gives them.
            checkpoint: A trained model's checkpoint, for ``predict`` with a ``predict_path``, and ``test`` (or
                ``predict``) with a ``test_path`` and no ``predict_path``: the class names and the input (size,
                mean and std) come from it, and the training images are not read (they need not exist).
                ``predict`` and ``test`` with ``--ckpt_path FILE`` set it.
            dataset: ``hub``: a dataset name (e.g. ``fashion_mnist``, ``cifar10``; needs a connection).
            image_column: ``hub``: the image column.
            label_column: ``hub``: the label column.
            val_fraction: Share of the training images held out for validation when there is no validation split.
            test_fraction: Share of the training images held out for testing when there is no test split.
            split_seed: Seed of the held-out split and the subset.
            train_size: Train on a seeded subset of this many images.
            val_size: Validate on a seeded subset of this many of the validation images.
            test_size: Test on a seeded subset of this many test images (the same for every model and seed
                with one ``split_seed``): a CPU budget's test set.
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
            check_duplicates: Say held-out images that copy a training image. For files this reads every image
                whose size another image shares (its first 64 KiB) once per run: false for a folder too large to
                read at each start.
        """
        super().__init__()
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        for name, value, low in (
            ("patch_size", patch_size, 0),
            ("img_size", img_size, 1),
            ("train_size", train_size, 1),
            ("val_size", val_size, 1),
            ("test_size", test_size, 1),
        ):
            if value is not None and value < low:
                raise DataError(f"data.{name}: {value} is below {low}")
        for name in ("mixup_alpha", "cutmix_alpha"):  # timm's Mixup takes a negative alpha for "off"
            if self.hparams[name] < 0:
                raise DataError(f"data.{name}: {self.hparams[name]} is below 0 (0 leaves it out)")
        if auto_augment:
            _check_auto_augment(auto_augment)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise DataError(f"data.scale: {list(scale)} is not an area range [low, high] within (0, 1]")
        self.splits: dict[str, ImageSplit] | None = None
        self._labels: list[str] = []
        self._native: tuple[int, int, int] | None = None  # (channels, height, width) of the data
        self._stats: tuple | None = None  # the training images' mean and std
        self._mixup = None
        self._state = self._checkpoint_state(checkpoint, predict_path, test_path)

    # --- sources ----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, ImageSplit]:
        if self.splits is not None:
            return self.splits
        hp = self.hparams
        if self._state is not None:  # from a checkpoint: its classes and input, no training images
            self._labels = list(self._state["labels"])
            self.splits = {}
            if hp.predict_path:
                self.splits["predict"] = read_images(Path(hp.predict_path))
                self._say_predict_images(self.splits["predict"], *self._state["data_config"]["input_size"])
            elif (
                hp.labels
            ):  # the classes the run kept (its checkpoint's): the folder's others dropped, as then
                test, found = read_folder(Path(hp.test_path))
                self.splits["test"] = _renumbered(test, found, self._labels)
            else:  # predict_path alone where there is one; its class folders among the checkpoint's classes
                self.splits["test"], _ = read_folder(Path(hp.test_path), self._labels)
            if "test" in self.splits:  # the subset reading every split takes
                subset = seeded_subset(
                    len(self.splits["test"]),
                    hp.test_size,
                    hp.split_seed,
                    2,
                    "data.test_size",
                    str(hp.test_path),
                )
                if subset is not None:
                    self.splits["test"] = self.splits["test"].subset(subset.materialize(sort=True))
            return self.splits
        if hp.source == "fashion_mnist":
            arrays = read_fashion_mnist(fashion_mnist_root(hp.root, hp.download))
            splits = {name: ImageSplit(labels, images=images) for name, (images, labels) in arrays.items()}
            self._labels = list(FASHION_MNIST_CLASSES)
        elif hp.source == "folder":
            if not hp.train_path:
                raise DataError("data.train_path: the folder source needs a training folder")
            splits = {}
            splits["train"], self._labels = read_folder(Path(hp.train_path))
            if len(self._labels) < 2:  # torchmetrics would refuse it with no folder named
                raise DataError(
                    f"data.train_path: {hp.train_path}: one class folder ({self._labels[0]}); a classifier needs 2 "
                    "or more (one subfolder per class)"
                )
            for name in ("val", "test"):
                if hp[f"{name}_path"]:
                    splits[name], _ = read_folder(Path(hp[f"{name}_path"]), self._labels)
        else:
            splits, self._labels = load_hub_images(
                hp.dataset, hp.train_path, hp.image_column, hp.label_column
            )
        if "test" not in splits and not hp.test_fraction:
            raise DataError(
                f"data: the {hp.source} source has no test split: give test_path, or a test_fraction above 0"
            )
        if hp.labels:
            splits = self._keep_classes(splits, list(hp.labels))
        train = splits["train"]
        # from every training image (before the held-out split and subsets: one input shape whatever the seed)
        self._native = native_shape(train)
        held = [name for name in ("val", "test") if name not in splits]  # val first: its rows as before
        sizes = held_out_sizes(len(train), {name: hp[f"{name}_fraction"] for name in held})
        parts = hold_out(len(train), sizes, hp.split_seed)
        for name in held:
            splits[name] = train.subset(parts[name].materialize(sort=True))
        rows = parts["train"].materialize(sort=True)
        if len(rows) == 0:
            raise DataError("data: no training images left after the held-out split")
        splits["train"] = train.subset(rows)
        for salt, name in enumerate(("train", "val", "test")):
            subset = seeded_subset(
                len(splits[name]),
                hp[f"{name}_size"],
                hp.split_seed,
                salt,
                f"data.{name}_size",
                f"the {name} split",
            )
            if subset is not None:
                splits[name] = splits[name].subset(subset.materialize(sort=True))
        self._warn_shared(splits)
        if hp.predict_path:
            splits["predict"] = read_images(Path(hp.predict_path))
            self._say_predict_images(splits["predict"], *self._native)
        self.splits = splits
        return splits

    def _say_predict_images(self, split: ImageSplit, channels: int, height: int, width: int) -> None:
        """What the images to predict lose to the model's input (``channels``, ``height``, ``width``, as trained):
        colour read as grey; another size, where the model sees the data's own size (no img_size, no pretrained
        model's input)."""
        _say_colour_read_as_grey(split, channels)
        if not self.hparams.input_config and not self.hparams.img_size:
            _say_other_sizes(split, height, width)

    def _has_predict_split(self) -> bool:
        return bool(self.hparams.predict_path)

    def _warn_shared(self, splits: dict[str, ImageSplit]) -> None:
        """A held-out image that is an exact copy of a training image is said, as for every modality."""
        from lightning.pytorch.utilities import rank_zero_only

        hp = self.hparams
        if rank_zero_only.rank != 0 or not hp.check_duplicates:
            return
        for name, shared in shared_images(splits["train"], {n: splits[n] for n in ("val", "test")}).items():
            if len(shared):
                held = splits[name]
                first = f"number {shared[0] + 1} of the {name} split"
                if held.files is not None:
                    first = str(held.files[shared[0]])
                where = hp[f"{name}_path"] or hp.train_path or hp.dataset or hp.root
                say_shared(f"{where} [{name}]", len(shared), len(held), f"{name} images", name,
                           f"the first is {first}", "Deduplicate the images, or hold out by group,")  # fmt: skip

    def _keep_classes(self, splits: dict[str, ImageSplit], keep: list[str]) -> dict[str, ImageSplit]:
        unknown = [c for c in keep if c not in self._labels]
        if unknown or len(set(keep)) != len(keep):
            problem = f"unknown class {unknown[0]!r}" if unknown else "a class is listed twice"
            raise DataError(f"data.labels: {problem} (the data's classes: {', '.join(self._labels)})")
        kept = {name: _renumbered(split, self._labels, keep) for name, split in splits.items()}
        left = [c for c in self._labels if c not in keep]
        # chosen, but said with what it leaves out (a folder left out unsaid looked like a lost class)
        if left:
            counts = ", ".join(
                f"{len(splits[n]) - len(kept[n])} of the {n} split's {len(splits[n])}" for n in splits
            )
            rank_zero_warn(f"data.labels keeps {len(keep)} of the data's {len(self._labels)} classes, leaving out "
                           f"{', '.join(left)}: {counts} images", stacklevel=2)  # fmt: skip
        self._labels = keep
        return kept

    # --- what the model sees ----------------------------------------------------------------------------

    def _config(self) -> dict:
        """timm data config: the model's (when it is a timm model), else the data's own size and statistics."""
        if self._state is not None:
            return dict(self._state["data_config"])
        self._load()
        hp = self.hparams
        channels, height, width = self._native
        config = dict(self.hparams.input_config or {})
        if not config:  # square, the shorter side: an image is resized by its shorter side and centre-cropped
            side = min(height, width)
            config = {"input_size": (channels, side, side), "interpolation": "bilinear", "crop_pct": 1.0}
            config["mean"], config["std"] = self._statistics(channels)
        if hp.img_size:
            config["input_size"] = (config["input_size"][0], hp.img_size, hp.img_size)
        for name in ("mean", "std"):  # one value per channel the model sees (one value: every channel)
            given = hp[name]
            if given is None:
                continue
            channels = config["input_size"][0]
            if len(given) not in (1, channels):
                raise DataError(f"data.{name}: {list(given)} has {len(given)} values for {channels} channels")
            if name == "std" and not all(v > 0 for v in given):
                raise DataError(
                    f"data.std: {list(given)}: every value must be above 0 (images are divided by it)"
                )
            config[name] = tuple(given)
        return config

    @property
    def data_config(self) -> dict:
        """The input the model sees: timm's data config (input size, mean/std, interpolation, crop)."""
        return self._config()

    def _statistics(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The training images' mean and std, computed once: every size the CLI links reads them."""
        if self._stats is None:
            self._stats = pixel_statistics(self._load()["train"], channels)
        return self._stats

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

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the class names in id order, which the outputs mean, and the input the
        model saw (size, mean and std), which ``data.checkpoint`` predicts with instead of the training images."""
        return {"labels": self.labels, "data_config": self._config()}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's classes must be this data's, in the same order: its output k means class k (other
        folders with the same number of classes would be scored against the wrong names)."""
        if "labels" in state and list(state["labels"]) != self.labels:
            where = self.hparams.train_path or self.hparams.dataset or self.hparams.source
            raise DataError(
                f"the checkpoint's classes {list(state['labels'])} differ from this data's ({where}): "
                f"{self.labels}; a model answers in the classes it was trained on"
            )

    def prediction_keys(self) -> list[tuple[str, list[str]]]:
        """The image file of each ``predict`` row (``predict_path``'s, or the test split's), for files; for the
        test split, the class each row is scored against."""
        split = self._load()["predict" if self._has_predict_split() else "test"]
        keys = [("file", [str(f) for f in split.files])] if split.files is not None else []
        if not self._has_predict_split():
            keys.append(("label", [self.labels[i] for i in np.asarray(split.labels).tolist()]))
        return keys

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

    def prepare_data(self) -> None:
        """Fashion-MNIST's download where its files are nowhere local: once per machine (Lightning calls this on
        one process), not once per DDP process in ``setup``, which then finds the files."""
        if self.hparams.source == "fashion_mnist" and self.hparams.download:
            fashion_mnist_root(self.hparams.root, True)

    def setup(self, stage: str | None = None) -> None:
        self._load()
        hp = self.hparams
        if hp.patch_size and self.img_size % hp.patch_size:
            raise DataError(
                f"data.patch_size: {hp.patch_size} does not divide the image size {self.img_size}"
            )
        if stage in (None, "fit"):  # before the trainer starts (the command line sets up the data first)
            self._check_mixing()

    def _check_mixing(self) -> None:
        """timm's Mixup pairs the images of a batch, so with mixup or cutmix every training batch is full (the
        last incomplete one dropped) and even: an odd size, or one above the training images per process (no
        batch at all: Lightning said "No training batches" and the command ended with status 0, no model
        written), is refused."""
        split_over = self.hparams.get("global_batch_size")
        # with a global batch, the share per device needs the trainer (devices, accumulated batches)
        if not self._mixing or (split_over and self.trainer is None):
            return
        option = "data.global_batch_size" if split_over else "data.batch_size"
        size = per_device_batch_size(self.hparams, self.trainer)
        if size % 2:
            raise DataError(
                f"{option}: {size} images per device is odd; mixup and cutmix pair the images of a batch, so they "
                "need an even batch size"
            )
        world = self.trainer.world_size if self.trainer is not None else 1
        n = len(self._load()["train"])
        if n // world < size:
            most = n // world // 2 * 2
            raise DataError(
                f"{option}: {size} images per device, and the training split holds {n} ({n // world} per process): "
                "mixup and cutmix train on full batches only (the last incomplete one is dropped), so no batch "
                "would train; "
                + (
                    f"give at most {most} images per device"
                    if most
                    else "too few images to pair: turn them off"
                )
            )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self._load()[split]
        rgb = self._config()["input_size"][0] == 3
        dataset = ImageDataset(data, self.transform(train), rgb)
        if train:
            self._check_mixing()  # again with the trainer: its process count
        # timm's Mixup pairs images within a batch: every training batch full (and so even)
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
            x, y = self._mixup(x, y)  # y becomes soft targets (B, K); the task's loss takes them
        out = {"x": x, "y": y}
        p = self.hparams.patch_size
        if p:
            from lit_models.vit import patchify

            out["x"] = patchify(x, p)
            out["lengths"] = torch.full((len(x),), out["x"].shape[1], dtype=torch.long, device=x.device)
        return out


def _renumbered(split: ImageSplit, classes: list[str], keep: list[str]) -> ImageSplit:
    """The rows of ``split`` (labels indexing ``classes``) whose class is in ``keep``, numbered as ``keep``."""
    new_id = np.array([keep.index(c) if c in keep else -1 for c in classes], dtype=np.int64)
    part = split.subset(np.flatnonzero(new_id[split.labels] >= 0))
    return replace(part, labels=new_id[part.labels])
