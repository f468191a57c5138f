"""Where images come from: Fashion-MNIST's IDX files (checked: magic number, dimensions, size, labels), a
folder of class folders (every file's header checked up front), or a Hugging Face image dataset.

``read_folder`` walks the folders itself rather than through ``datasets``' imagefolder builder: that one
decodes images only when they are used (a corrupt file stops training mid-epoch instead of before it) and
drops an empty class folder without a word. The ``hub`` source uses ``datasets`` (its imagefolder for local
files too).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, UnidentifiedImageError

from archbench.errors import DataError, first_line

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
    """Either in-memory images (uint8, (N, H, W) or (N, H, W, C)) or image files; and class ids. For files,
    ``headers`` (N, 3) holds each file's (colour 0/1, height, width), read from its header."""

    labels: np.ndarray
    images: np.ndarray | None = None
    files: list[Path] | None = None
    headers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(
            self.labels[index],
            None if self.images is None else self.images[index],
            None if self.files is None else [self.files[i] for i in index],
            None if self.headers is None else self.headers[index],
        )

    def image(self, i: int) -> Image.Image:
        if self.images is not None:  # 8-bit already (_one_array), or an array column as its dataset holds it
            return Image.fromarray(self.images[i])
        return eight_bit(_open_image(self.files[i]))


def eight_bit(image: Image.Image) -> Image.Image:
    """An image of 16- or 32-bit integer pixels, or of floats, as 8-bit grey (what the transforms and
    ``convert`` read): integers over 257 (65535 -> 255), floats in [0, 1] times 255; any other mode as it is.
    Pillow's ``convert`` clips instead: a 16-bit image came out all but white, a float one black."""
    # I;16, I;16B, I (32-bit, of a 16-bit file: _verify_image checks the range)
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64) / 257
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64) * 255
    else:
        return image
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


# the pixel values eight_bit reads in a 32-bit integer or a float image; others are refused at the header check
WIDE_RANGES = {"I": (0, 65535), "F": (0.0, 1.0)}


def shared_images(train: ImageSplit, held: dict[str, ImageSplit]) -> dict[str, np.ndarray]:
    """For each held-out split, the positions whose image is an exact copy of a training image: the same pixels
    (in-memory images) or the same file bytes (files: only files whose size a file of the other side has are
    read, their first 64 KiB, and the whole of larger ones whose first 64 KiB match). The training split is keyed
    once for all of them."""
    found = {name: np.zeros(0, dtype=np.int64) for name in held}
    if not len(train):
        return found
    if train.images is not None:
        keys = np.fromiter((hash(image.tobytes()) for image in train.images), np.int64, len(train))
        for name, split in held.items():
            if split.images is not None and len(split):
                mine = np.fromiter((hash(image.tobytes()) for image in split.images), np.int64, len(split))
                found[name] = np.flatnonzero(np.isin(mine, keys))
        return found
    sizes = np.array([f.stat().st_size for f in train.files], dtype=np.int64)
    held_sizes = {
        n: np.array([f.stat().st_size for f in s.files or []], dtype=np.int64) for n, s in held.items()
    }
    wanted = np.concatenate([np.zeros(0, dtype=np.int64), *held_sizes.values()])

    @functools.cache
    def key(path: Path, whole: bool = False) -> bytes:  # the first 64 KiB first; the whole file to confirm
        with open(path, "rb") as f:
            data = f.read() if whole else f.read(1 << 16)
        return hashlib.blake2b(data, digest_size=16).digest()

    same_size = np.flatnonzero(np.isin(sizes, wanted))
    heads = {}
    for i in same_size:
        heads.setdefault(key(train.files[i]), []).append(train.files[i])
    for name, split in held.items():
        shared = []
        for i in np.flatnonzero(np.isin(held_sizes[name], sizes)):
            path = split.files[i]
            matches = heads.get(key(path), [])
            if matches and (
                held_sizes[name][i] <= 1 << 16 or key(path, True) in {key(m, True) for m in matches}
            ):
                shared.append(i)
        found[name] = np.array(shared, dtype=np.int64)
    return found


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None


def read_folder(root: Path, classes: list[str] | None = None) -> tuple[ImageSplit, list[str]]:
    """``root/CLASS/*.png`` (any common image suffix, in subfolders of the class folder too) -> an ImageSplit of
    files; classes sorted unless given. Files with another suffix are skipped, with one warning that counts them."""
    if root.is_file():
        raise DataError(f"{root}: a file, not a folder (expected a folder with one subfolder per class)")
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected one subfolder per class)")
    # files beside the class folders belong to no class: not read, and said (trial 29: an image there went unsaid)
    loose = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if loose:
        shown = ", ".join(p.name for p in loose[:3]) + (", ..." if len(loose) > 3 else "")
        rank_zero_warn(f"{root}: {len(loose)} file(s) beside the class folders, in no class, not read: {shown}",
                       stacklevel=5)  # fmt: skip
    # hidden entries (.ipynb_checkpoints, macOS's ._photo.png) are a tool's, not a class or an image
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    found = [p.name for p in folders if not p.name.startswith(".")]
    skipped = [p for p in folders if p.name.startswith(".")]
    if not found:
        raise DataError(f"{root}: no class subfolders")
    classes = classes or found
    files, labels, headers = [], [], []
    for name in found:
        if name not in classes:
            raise DataError(f"{root / name}: class {name!r} is not one of the training classes {classes}")
        images, others = _images_under(root / name)  # subfolders of a class are that class (as ImageFolder)
        skipped += others
        if not images:
            raise DataError(
                f"{root / name}: empty class folder (no {', '.join(sorted(IMAGE_SUFFIXES))} files)"
            )
        # a header check of every file now, not a crash in the middle of training
        headers += [_verify_image(image) for image in images]
        files += images
        labels += [classes.index(name)] * len(images)
    _say_skipped(root, skipped, "images or classes")
    split = ImageSplit(
        np.array(labels, dtype=np.int64), files=files, headers=np.array(headers, dtype=np.int64)
    )
    return split, classes


def read_images(root: Path) -> ImageSplit:
    """Every image under ``root`` (a folder of images, with class subfolders or not; hidden entries aside), in
    path order, headers checked; labels -1 (unknown): what ``predict`` reads."""
    if root.is_file():
        raise DataError(f"data.predict_path: {root} is a file: give the folder that holds the images")
    if not root.is_dir():
        raise DataError(f"data.predict_path: {root}: folder not found")
    files, skipped = _images_under(root)
    _say_skipped(root, skipped, "images")
    if not files:
        raise DataError(f"data.predict_path: {root}: no {', '.join(sorted(IMAGE_SUFFIXES))} images in it")
    headers = np.array([_verify_image(f) for f in files], dtype=np.int64)
    return ImageSplit(np.full(len(files), -1, dtype=np.int64), files=files, headers=headers)


def _say_skipped(root: Path, skipped: list[Path], what: str) -> None:
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:3]) + (
            ", ..." if len(skipped) > 3 else ""
        )
        rank_zero_warn(
            f"{root}: skipped {len(skipped)} file(s) or hidden folder(s) that are not "
            f"{'/'.join(sorted(IMAGE_SUFFIXES))} {what}: {shown}",
            stacklevel=6,
        )


def _images_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the images anywhere under ``folder``, in path order; the other files and the hidden entries, which a
    tool wrote: .ipynb_checkpoints, macOS's ._photo.png)."""
    images, others = [], []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if hidden and path.name.startswith(".") and (path.is_file() or path.is_dir()):
            others.append(path)  # said once, its contents not listed
        elif path.is_file() and not hidden:
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def _verify_image(path: Path) -> tuple[int, int, int]:
    """(colour 0/1, height, width) from the file's header, after checking the file; no pixel is decoded
    (except a palette image's whose palette layout is unusual, and a JPEG's that does not end with its end
    marker: ``verify`` checks a PNG's chunks but reads no JPEG data, so a JPEG cut short passed, to stop training
    when it was first loaded)."""
    try:
        with Image.open(path) as image:
            image.verify()
            colour = _is_colour(image)
            size, kind, mode = (image.height, image.width), image.format, image.mode
        # cut short, or data after it: decode to know (MPO: a phone's multi-picture JPEG)
        if kind in ("JPEG", "MPO") and not _ends_with(path, b"\xff\xd9"):
            with Image.open(path) as image:
                image.load()
        if colour is None:  # a palette layout not read here: decode this one file and look at its pixels
            rgb = np.asarray(_open_image(path).convert("RGB"))
            colour = bool((rgb != rgb[..., :1]).any())
        if mode in WIDE_RANGES:  # 32-bit integers or floats (scientific images): a range eight_bit can read
            _refuse_out_of_range(np.asarray(_open_image(path), dtype=np.float64), mode, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    return int(colour), *size


def _refuse_out_of_range(values: np.ndarray, mode: str, where: str) -> None:
    """A DataError naming ``where`` when a 32-bit integer or float image holds values ``eight_bit`` would clip
    (or NaN)."""
    low, high = WIDE_RANGES[mode]
    if not (np.isfinite(values).all() and values.min() >= low and values.max() <= high):
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise DataError(
            f"{where}: {kind} pixels from {np.nanmin(values):g} to {np.nanmax(values):g}; read as {low:g} (black) "
            f"to {high:g} (white), so values outside would be clipped: save it rescaled to that range, or as an 8- "
            "or 16-bit image"
        )


def _ends_with(path: Path, marker: bytes) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < len(marker):
            return False
        f.seek(-len(marker), os.SEEK_END)
        return f.read() == marker


def _is_colour(image: Image.Image) -> bool | None:
    """Whether an image (read lazily) has colour: a colour mode (RGB, RGBA, CMYK, ...), or a palette with a
    non-grey entry. None where the palette's layout is not one read here."""
    if image.mode not in ("P", "PA"):
        return Image.getmodebase(image.mode) == "RGB"  # not 1, L, LA, I, I;16, F
    palette = image.palette
    if palette is None:
        return None
    layout, data = palette.rawmode or palette.mode, np.frombuffer(bytes(palette.palette), dtype=np.uint8)
    if layout == "RGB;L":  # planar: all reds, then greens, then blues
        rgb = data[: len(data) // 3 * 3].reshape(3, -1).T
    elif layout in ("RGB", "BGR", "RGBA", "RGBX", "BGRX", "BGRA"):
        rgb = data[: len(data) // len(layout) * len(layout)].reshape(-1, len(layout))[:, :3]
    else:
        return None
    return bool((rgb != rgb[:, :1]).any())


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
        return download_fashion_mnist(path)
    raise DataError(
        f"data.root: Fashion-MNIST IDX files not found in {path}; run: python -m experiments data fashion_mnist"
    )


def download_fashion_mnist(path: Path) -> Path:
    """torchvision's download of Fashion-MNIST into ``path/torchvision`` (its raw IDX files). A first download
    goes to a temporary folder beside it, moved into place when whole; when it fails (no network) it removes
    only what it made: that folder and the folders above it that it created, emptied, never one that was there
    (another process's download into the same place, say). One line says why it failed."""
    from torchvision.datasets import FashionMNIST

    where = path.resolve()  # a folder named through one that does not exist yet (``new/../data``) included
    target = where / "torchvision"
    made, scratch = [], None
    if not target.is_dir():
        for folder in reversed([where, *where.parents]):  # from the top down
            try:
                folder.mkdir()
                made.append(folder)
            except FileExistsError:
                pass
            except OSError as err:  # a file in the way, no permission
                raise DataError(
                    f"data.root: {folder} cannot be made for the download: {err.strerror}"
                ) from None
        scratch = Path(tempfile.mkdtemp(prefix=".torchvision-", dir=where))
    try:
        FashionMNIST(str(scratch or target), download=True)
    except Exception as err:  # no network, a mirror down: the cause in one line, and what to do
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        for folder in reversed(made):  # deepest first; one another process has filled meanwhile stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        # torchvision's message: the file on its first line, the cause on its last
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        why = lines[0].rstrip(":") + (f": {lines[-1]}" if len(lines) > 1 else "")
        raise DataError(
            f"data.root: Fashion-MNIST is not in {path} and could not be downloaded ({why[:200]}); "
            "run: python -m experiments data fashion_mnist"
        ) from None
    if scratch is not None:
        try:
            os.replace(scratch, target)
        except OSError:  # another process's download got there first: its files are the same
            shutil.rmtree(scratch, ignore_errors=True)
    return target / "FashionMNIST" / "raw"


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
            if Path(train_path).is_dir():  # what imagefolder passes over, said as the folder source says it
                from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

                _, others = _images_under(Path(train_path))
                taken = {
                    *ImageFolder.EXTENSIONS,
                    *(f".{n.split('.')[-1]}" for n in ImageFolder.METADATA_FILENAMES),
                }
                _say_skipped(Path(train_path), [p for p in others if p.suffix.lower() not in taken], "images")
        else:
            raise DataError("data: the hub source needs data.dataset (a hub name) or data.train_path")
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        raise DataError(f"data.dataset: {name!r} could not be loaded: {first_line(err)}") from None
    named = {"train": "train", "val": "validation", "test": "test"}
    splits, raw = {}, {}
    for ours, theirs in named.items():
        if theirs not in loaded:
            continue
        data = loaded[theirs]
        for option, column in (("image_column", image_column), ("label_column", label_column)):
            if column not in data.column_names:
                raise DataError(f"{name} [{theirs}]: no column {column!r} (data.{option}; columns: "
                                f"{', '.join(data.column_names)})")  # fmt: skip
        raw[ours] = data[label_column]
        splits[ours] = ImageSplit(
            np.zeros(0, dtype=np.int64), images=_decoded(data, image_column, name, theirs)
        )
    feature = loaded["train"].features[label_column]
    labels = list(getattr(feature, "names", []))
    ids = _label_ids(raw, label_column, {o: f"{name} [{t}]" for o, t in named.items()})
    if isinstance(ids, tuple):  # class names written in the metadata (cat, dog): sorted, as folders are
        ids, labels = ids
    for ours, split in splits.items():
        split.labels = ids[ours]
    labels = labels or [str(i) for i in range(int(splits["train"].labels.max()) + 1)]
    for split_name, split in splits.items():
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= len(labels)))
        if len(bad):
            raise DataError(
                f"{name} [{split_name}]: row {bad[0] + 1}: label {split.labels[bad[0]]} outside 0..{len(labels) - 1}"
            )
    return splits, labels


def _decoded(data, column: str, name: str, split: str) -> np.ndarray:
    """A hub split's images as one array (``_one_array``); an image that does not decode (a file cut short) is
    named by its file, as the folder source names it, not left to Pillow's bare "image file is truncated"."""
    try:
        return _one_array(data[column], f"{name} [{split}]")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        import datasets

        files = data.cast_column(column, datasets.Image(decode=False))[column]
        for k, item in enumerate(files):
            source = item.get("path") or f"{name} [{split}]: image {k + 1}"
            try:
                with Image.open(
                    item["path"] if item.get("bytes") is None else io.BytesIO(item["bytes"])
                ) as image:
                    image.load()
            except (UnidentifiedImageError, OSError, SyntaxError) as bad:
                raise DataError(f"{source}: unreadable or corrupt image ({first_line(bad)})") from None
        raise DataError(f"{name} [{split}]: an image could not be read ({first_line(err)})") from None


def _label_ids(raw: dict[str, list], column: str, where: dict[str, str]):
    """The hub source's labels per split as class ids: integers as they are (a ClassLabel's, or numbers), or
    class names (strings, as an imagefolder's metadata.csv writes them) as their place among the training
    split's sorted names, returned with those names. An empty label, a mix of kinds, or a name the training
    split lacks stops naming the split, row and value."""
    kinds = set()
    for split, values in raw.items():
        for k, value in enumerate(values):
            if value is None or isinstance(value, float) and np.isnan(value) or value == "":
                raise DataError(f"{where[split]}: row {k + 1}: {column} is empty")
            kind = str if isinstance(value, str) else int if isinstance(value, (int, np.integer)) else None
            if kind is None or isinstance(value, bool):
                raise DataError(f"{where[split]}: row {k + 1}: {column} {value!r} is neither a class name nor an "
                                "integer class id")  # fmt: skip
            kinds.add(kind)
            if len(kinds) > 1:
                raise DataError(f"{where[split]}: row {k + 1}: {column} {value!r}: the labels mix class names and "
                                "integer ids; give one kind")  # fmt: skip
    if kinds != {str}:
        return {split: np.asarray(values, dtype=np.int64) for split, values in raw.items()}
    names = sorted(set(raw["train"]))
    place = {n: i for i, n in enumerate(names)}
    for split, values in raw.items():
        unseen = next((k for k, v in enumerate(values) if v not in place), None)
        if unseen is not None:
            raise DataError(f"{where[split]}: row {unseen + 1}: {column} {values[unseen]!r} is not a training "
                            f"class ({', '.join(names)})")  # fmt: skip
    return {
        split: np.asarray([place[v] for v in values], dtype=np.int64) for split, values in raw.items()
    }, names


def _one_array(pictures: list, where: str) -> np.ndarray:
    """The hub source's images as one array: PIL images brought to one colour mode (RGB if any has colour, else
    grey) and one size, or a DataError that names the first image of another size; arrays stacked as they are."""
    # an array column (a Sequence or Array2D feature)
    if not all(isinstance(im, Image.Image) for im in pictures):
        arrays = [np.asarray(im) for im in pictures]
        other = next((i for i, a in enumerate(arrays) if a.shape != arrays[0].shape), None)
        if other is not None:
            raise DataError(
                f"{where}: image {other + 1} has shape {arrays[other].shape}, image 1 {arrays[0].shape}"
            )
        return np.stack(arrays)
    sizes = [im.size for im in pictures]
    other = next((i for i, size in enumerate(sizes) if size != sizes[0]), None)
    if other is not None:
        (w0, h0), (w, h) = sizes[0], sizes[other]
        raise DataError(
            f"{where}: image {other + 1} is {w}x{h}, image 1 {w0}x{h0}: the hub source holds its images in one array "
            "of one size; for a folder of images of several sizes use data.source folder (it resizes each)"
        )
    for k, im in enumerate(pictures):  # 16-bit and float images as 8-bit (eight_bit), in the range it reads
        if im.mode in WIDE_RANGES:
            _refuse_out_of_range(np.asarray(im, dtype=np.float64), im.mode, f"{where}: image {k + 1}")
    pictures = [eight_bit(im) for im in pictures]
    modes = {im.mode for im in pictures}
    if len(modes) == 1:
        return np.stack([np.asarray(im) for im in pictures])
    mode = "L" if all(Image.getmodebase(m) == "L" for m in modes) else "RGB"
    return np.stack([np.asarray(im.convert(mode)) for im in pictures])


def pixel_statistics(split: ImageSplit, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel of (up to 10,000) in-memory images in [0, 1]; 0.5 / 0.5 for image files."""
    if split.images is None:
        return (0.5,) * channels, (0.5,) * channels
    pixels = split.images[: min(len(split), 10_000)].astype(np.float64) / 255.0
    axes = tuple(range(pixels.ndim - 1)) if pixels.ndim == 4 else None
    mean, std = np.atleast_1d(pixels.mean(axis=axes)), np.atleast_1d(pixels.std(axis=axes))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def native_shape(split: ImageSplit) -> tuple[int, int, int]:
    """(channels, height, width) the images are served at, from every image of ``split`` (headers only):
    3 channels if any image has colour, 1 only if all are grey; the most common size (a tie: the largest of
    the tied), with one warning that counts the images of other sizes (they are resized)."""
    if split.images is not None:  # one array: one size and one channel count for all
        images = split.images
        colour = images.ndim == 4 and images.shape[-1] >= 3
        return (3 if colour else 1), images.shape[1], images.shape[2]
    headers = split.headers
    counts = Counter(map(tuple, headers[:, 1:].tolist()))
    (height, width), n = max(counts.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
    if len(counts) > 1:
        others = [
            str(f) for f, h in zip(split.files, headers, strict=True) if (h[1], h[2]) != (height, width)
        ]
        rank_zero_warn(
            f"{len(others)} of {len(split)} training images are not {height}x{width} (the most common size) "
            f"and are resized to it, e.g. {others[0]} (counted in the training files, before any validation or "
            "test images are held out of them)",
            stacklevel=5,
        )
    return (3 if headers[:, 0].any() else 1), height, width
