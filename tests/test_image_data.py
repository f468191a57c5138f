"""Image data: Fashion-MNIST IDX files, class folders and Hugging Face image datasets, their bad input;
images as patch sequences; the input a timm model expects reaching the data from the config."""

import gzip
import struct

import numpy as np
import pytest
import torch
from conftest import run_main
from image_data import fake_fashion_mnist, image_args, write_folder, write_idx
from PIL import Image

from archbench.errors import DataError
from datamodules.images import ImageDataModule
from experiments.cli import ExperimentCLI
from lit_models.image_nets import TimmNet


def test_fashion_mnist_idx_files_split_and_batches(tmp_path):
    dm = ImageDataModule(
        root=str(fake_fashion_mnist(tmp_path / "fm")), val_fraction=0.2, batch_size=8, download=False
    )
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 48, "val": 12, "test": 20}
    assert dm.num_outputs == 10 and dm.in_channels == 1 and dm.img_size == 28
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["x"].shape == (8, 1, 28, 28) and batch["y"].dtype == torch.long
    # normalised with the training images' own mean and std
    assert abs(batch["x"].mean().item()) < 0.5


def test_keep_only_some_classes_renumbered_in_the_given_order(tmp_path):
    root = str(fake_fashion_mnist(tmp_path / "fm"))
    dm = ImageDataModule(root=root, labels=["Shirt", "Sandal"], val_fraction=0.0, download=False)
    # chosen, and said with what it leaves out (trial 18: a class folder left out without a word)
    with pytest.warns(UserWarning, match=r"^data.labels keeps 2 of the data's 10 classes, leaving out T-shirt/top, "
                                         r"Trouser, .*: \d+ of the train split's \d+, \d+ of the test split's \d+ "
                                         r"images$"):  # fmt: skip
        dm.setup()
    assert dm.labels == ["Shirt", "Sandal"] and dm.num_outputs == 2
    full = ImageDataModule(root=root, val_fraction=0.0, download=False)
    full.setup()
    for name in ("train", "test"):
        kept, everything = dm.splits[name], full.splits[name]
        shirts, sandals = everything.labels == 6, everything.labels == 5
        assert (kept.labels == 0).sum() == shirts.sum() and (kept.labels == 1).sum() == sandals.sum()
        np.testing.assert_array_equal(kept.images[kept.labels == 0], everything.images[shirts])
    with pytest.raises(
        DataError, match=r"data.labels: unknown class 'Cat' \(the data's classes: T-shirt/top, "
    ):
        ImageDataModule(root=root, labels=["Shirt", "Cat"], download=False).setup()


def test_images_as_patch_sequences(tmp_path):
    dm = ImageDataModule(
        root=str(fake_fashion_mnist(tmp_path / "fm")), patch_size=7, batch_size=4, download=False
    )
    dm.setup()
    assert dm.in_channels == 49 and dm.seq_len == 16
    x, y = next(iter(dm.val_dataloader()))
    batch = dm.on_after_batch_transfer((x, y), 0)
    assert batch["x"].shape == (4, 16, 49) and batch["lengths"].tolist() == [16] * 4
    torch.testing.assert_close(batch["x"][:, 0], x[:, 0, :7, :7].reshape(4, 49))  # the top-left patch


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (lambda p: p.write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 12), r"not an unsigned-byte IDX file \(magic number 00000903"),
        (lambda p: write_idx(p, np.zeros((4, 28)), compress=False), r"IDX file with 2 dimensions, expected 3"),
        (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 5, 28, 28) + b"\x00" * 10)), r"header says shape \(5, 28, 28\)"),
    ],
)  # fmt: skip
def test_bad_idx_files_name_the_file(tmp_path, corrupt, expected):
    root = fake_fashion_mnist(tmp_path / "fm")
    target = root / "train-images-idx3-ubyte.gz"
    corrupt(target)
    with pytest.raises(DataError, match=expected) as err:
        ImageDataModule(root=str(root), download=False).setup()
    assert str(target) in str(err.value)


def test_out_of_range_idx_labels(tmp_path):
    root = fake_fashion_mnist(tmp_path / "fm")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 12] + [0] * 17))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 12 at item 2 is outside 0..9"):
        ImageDataModule(root=str(root), download=False).setup()


def test_image_folders_and_their_bad_input(tmp_path):
    train = write_folder(tmp_path / "train", per_class=5)
    test = write_folder(tmp_path / "test", per_class=2)
    dm = ImageDataModule(
        source="folder", train_path=str(train), test_path=str(test), val_fraction=0.2, batch_size=4
    )
    dm.setup()
    assert dm.labels == ["cat", "dog"] and dm.in_channels == 3 and dm.img_size == 12
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 8, "val": 2, "test": 4}
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 12, 12)
    (train / "bird").mkdir()
    with pytest.raises(DataError, match=r"train/bird: empty class folder"):
        ImageDataModule(source="folder", train_path=str(train), test_path=str(test)).setup()
    (train / "bird").rmdir()
    (train / "dog" / "broken.png").write_bytes(b"not a png")
    dm = ImageDataModule(source="folder", train_path=str(train), test_path=str(test))
    with pytest.raises(DataError, match=r"dog/broken.png: unreadable or corrupt image"):
        dm.setup()  # found before training starts
    (train / "dog" / "broken.png").unlink()
    # no test folder: test_fraction of the training images, seeded, apart from training and validation (the
    # validation rows are those it held out before)
    held = ImageDataModule(source="folder", train_path=str(train), val_fraction=0.2, test_fraction=0.2)
    held.setup()
    files = {k: {str(f) for f in v.files} for k, v in held.splits.items()}
    assert {k: len(v) for k, v in files.items()} == {"train": 6, "val": 2, "test": 2}
    assert not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    assert files["val"] == {str(f) for f in dm_files(train, test, val_fraction=0.2)}
    with pytest.raises(DataError, match=r"no test split: give test_path, or a test_fraction above 0"):
        ImageDataModule(source="folder", train_path=str(train), test_fraction=0.0).setup()
    with pytest.raises(
        DataError, match=r"data.val_fraction: 0.5, with data.test_fraction 0.5, leaves no training data"
    ):
        ImageDataModule(source="folder", train_path=str(train), val_fraction=0.5, test_fraction=0.5)


def dm_files(train, test, **kwargs):
    dm = ImageDataModule(source="folder", train_path=str(train), test_path=str(test), **kwargs)
    dm.setup()
    return dm.splits["val"].files


def test_held_out_images_that_copy_training_images_are_said(tmp_path, recwarn):
    train = write_folder(tmp_path / "train", per_class=5)
    test = write_folder(tmp_path / "test", per_class=2, seed=1)
    folder = dict(source="folder", train_path=str(train), test_path=str(test), val_fraction=0.0)
    ImageDataModule(**folder).setup()
    assert not [w for w in recwarn if "also occur in training" in str(w.message)]
    (test / "dog" / "copy.png").write_bytes((train / "cat" / "3.png").read_bytes())  # the label matters not
    with pytest.warns(UserWarning, match=r"test\]: 1 of 5 test images \(20.0%\) also occur in training \(the "
                                         r"first is .*test/dog/copy.png\)"):  # fmt: skip
        ImageDataModule(**folder).setup()
    root = fake_fashion_mnist(tmp_path / "fm")  # in memory: the same pixels
    with gzip.open(root / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.concatenate([images[50:53], images[:17] + 1]))
    with pytest.warns(
        UserWarning, match=r"3 of 20 test images \(15.0%\) .*the first is number 1 of the test"
    ):
        ImageDataModule(root=str(root), val_fraction=0.0, download=False).setup()


def test_hugging_face_image_dataset_from_local_files(tmp_path):
    """The hub source through ``datasets`` (here its imagefolder builder on local files; a hub name online)."""
    write_folder(tmp_path / "hf" / "train", per_class=5, mode="L")
    write_folder(tmp_path / "hf" / "test", per_class=2, mode="L")
    dm = ImageDataModule(source="hub", train_path=str(tmp_path / "hf"), val_fraction=0.2, batch_size=4)
    dm.setup()
    assert dm.labels == ["cat", "dog"] and dm.in_channels == 1
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 8, "val": 2, "test": 4}
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 1, 12, 12) and set(y.tolist()) <= {0, 1}
    with pytest.raises(DataError, match=r"no column 'picture' \(data.image_column; columns:"):
        ImageDataModule(source="hub", train_path=str(tmp_path / "hf"), image_column="picture").setup()
    # grey, RGB and RGBA images together: one colour mode for all (the stack of arrays of three shapes failed)
    write_folder(tmp_path / "hf" / "train", classes=("cat",), per_class=1, mode="RGB", seed=3)
    Image.open(tmp_path / "hf" / "train" / "cat" / "0.png").convert("RGBA").save(
        tmp_path / "hf" / "train" / "dog" / "9.png"
    )
    (tmp_path / "hf" / "train" / "notes.txt").write_text("where the photos came from")
    mixed = ImageDataModule(source="hub", train_path=str(tmp_path / "hf"), val_fraction=0.2, batch_size=4)
    with pytest.warns(
        UserWarning,
        match=r"hf: skipped 1 file\(s\) or hidden folder\(s\) that are not .* images: train/notes.txt",
    ):
        mixed.setup()
    assert mixed.in_channels == 3 and mixed.splits["train"].images.shape[1:] == (12, 12, 3)
    Image.new("L", (20, 12)).save(tmp_path / "hf" / "test" / "dog" / "wide.png")
    with pytest.raises(DataError, match=r"\[test\]: image \d+ is 20x12, image 1 12x12: the hub source holds its images "
                                        "in one array of one size; .* use data.source folder"):  # fmt: skip
        ImageDataModule(source="hub", train_path=str(tmp_path / "hf"), val_fraction=0.2).setup()


def test_the_hub_source_reads_class_names_in_a_metadata_file_and_names_bad_rows_and_files(tmp_path):
    """imagefolder with a metadata.csv: class names as strings are classes (sorted, as folders are), not an
    int() traceback; an empty label and a name the training split lacks name their split and row; a file cut
    short is named as the folder source names it, not Pillow's bare "image file is truncated" (trial 18)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    names = ["dog", "cat", "dog", "cat", "bird", "cat"]
    for i in range(len(names)):
        _rgb(seed=i).save(flat / f"{i}.png")
    metadata = "file_name,label\n" + "".join(f"{i}.png,{n}\n" for i, n in enumerate(names))
    (flat / "metadata.csv").write_text(metadata)
    dm = ImageDataModule(
        source="hub", train_path=str(flat), val_fraction=0.0, test_fraction=0.2, batch_size=2
    )
    dm.setup()
    assert dm.labels == ["bird", "cat", "dog"]
    ids = np.concatenate([dm.splits[s].labels for s in ("train", "test")])
    assert sorted(ids.tolist()) == sorted(dm.labels.index(n) for n in names)
    (flat / "metadata.csv").write_text(metadata.replace("3.png,cat", "3.png,"))
    with pytest.raises(DataError, match=r"flat \[train\]: row \d: label is empty$"):
        ImageDataModule(source="hub", train_path=str(flat), val_fraction=0.0).setup()
    folders = tmp_path / "folders"
    write_folder(folders / "train", per_class=3)
    whole = (folders / "train" / "cat" / "1.png").read_bytes()
    (folders / "train" / "cat" / "1.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"folders/train/cat/1.png: unreadable or corrupt image \("):
        ImageDataModule(source="hub", train_path=str(folders), val_fraction=0.0).setup()


def test_grey_images_become_rgb_for_a_timm_model(tmp_path):
    """The timm model's input (size, ImageNet mean/std, RGB) reaches the data from the config alone: the CLI
    links it from the net's settings, nothing reads the built model back."""
    args = [*image_args(tmp_path), "--model.net=lit_models.image_nets.TimmNet", "--model.net.init_args.name=resnet18",
            "--data.batch_size=4"]  # fmt: skip
    dm = ExperimentCLI(args=args, run=False).datamodule
    from timm.data import resolve_data_config

    linked = {k: tuple(v) if isinstance(v, list) else v for k, v in dm.hparams.input_config.items()}
    assert linked == resolve_data_config(model=TimmNet("resnet18", 10).model)
    assert dm.in_channels == 3 and dm.img_size == 224  # timm's input size for resnet18
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 224, 224)
    # the three channels hold the same grey values, each normalised with ImageNet's own mean and std
    grey = [
        x[:, c] * std + mean
        for c, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True))
    ]
    torch.testing.assert_close(grey[0], grey[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(grey[0], grey[2], atol=1e-5, rtol=0)


def test_missing_fashion_mnist_offline_is_one_clear_line(tmp_path):
    args = image_args(tmp_path, "mnist_cnn.yaml")
    result = run_main("fit", *args, f"--data.root={tmp_path / 'nothing'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "python -m experiments data fashion_mnist" in result.stderr.strip().splitlines()[-1]


def test_a_failed_fashion_mnist_download_is_one_line_and_leaves_only_what_was_there(tmp_path, monkeypatch):
    """torchvision's own download, from a mirror that is not there (as offline): its several-line error in one
    line, with the file and the cause; none of the folders it made are left, and none that were there go."""
    from torchvision.datasets import FashionMNIST

    from datamodules.image_sources import fashion_mnist_root

    monkeypatch.setattr(FashionMNIST, "mirrors", [(tmp_path / "no-mirror").as_uri() + "/"])
    root = tmp_path / "data" / "fashion_mnist"
    with pytest.raises(DataError) as caught:
        fashion_mnist_root(str(root), download=True)
    said = str(caught.value)
    assert (
        "\n" not in said and "could not be downloaded (Error downloading train-images-idx3-ubyte.gz: " in said
    )
    assert said.endswith("; run: python -m experiments data fashion_mnist")
    assert not list(tmp_path.iterdir())
    # the folders above, and a download folder another process has begun, named through a folder not there
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("kept")
    begun = root / "torchvision" / "FashionMNIST" / "raw"
    begun.mkdir(parents=True)
    (begun / "part.gz").write_bytes(b"")
    with pytest.raises(DataError, match="could not be downloaded"):
        fashion_mnist_root(str(tmp_path / "elsewhere" / ".." / "data" / "fashion_mnist"), download=True)
    assert (tmp_path / "data" / "mine.txt").is_file() and (begun / "part.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_mixup_trains_on_soft_targets(tmp_path):
    from lightning.pytorch.callbacks import Callback

    args = [*image_args(tmp_path, "mnist_cnn.yaml"), "--data.mixup_alpha=0.4", "--data.cutmix_alpha=1.0"]
    cli = ExperimentCLI(args=[*args, "--trainer.fast_dev_run=2"], run=False)
    seen = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["y"])

    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert seen and all(y.shape == (8, 10) and y.dtype.is_floating_point for y in seen)
    torch.testing.assert_close(seen[0].sum(-1), torch.ones(8))
    assert (seen[0].max(-1).values < 1).all()  # smoothed and mixed: never one-hot


def test_seeded_validation_and_test_subsets(tmp_path):
    """``val_size``/``test_size`` keep a seeded subset of those splits (the same for every model and seed of
    one ``split_seed``), as ``train_size`` does for training."""
    root = str(fake_fashion_mnist(tmp_path / "fm"))
    full = ImageDataModule(root=root, val_fraction=0.2, download=False)
    full.setup()

    def subsets(split_seed):
        dm = ImageDataModule(root=root, val_fraction=0.2, val_size=5, test_size=7, train_size=30,
                             split_seed=split_seed, download=False)  # fmt: skip
        dm.setup()
        return dm.splits

    a, b, other = subsets(0), subsets(0), subsets(1)
    assert {k: len(v) for k, v in a.items()} == {"train": 30, "val": 5, "test": 7}
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name].images, b[name].images)
        # every kept image is one of the split's own
        whole = {img.tobytes() for img in full.splits[name].images}
        assert all(img.tobytes() in whole for img in a[name].images)
    assert not np.array_equal(a["test"].images, other["test"].images)
    with pytest.raises(DataError, match="data.test_size: 0 is below 1"):
        ImageDataModule(root=root, test_size=0, download=False)


def _folder(root, images: dict[str, Image.Image]):
    """``images``: relative path -> image, saved (the suffix picks the format)."""
    for name, image in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
    return root


def _rgb(size=12, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3)).astype(np.uint8))


def test_a_first_grey_image_does_not_make_a_colour_folder_grey(tmp_path):
    """3 channels if any training image has colour, whatever comes first; 1 only if every image is grey."""
    grey = Image.new("L", (12, 12), 90)
    images = {"cat/0.png": grey, **{f"{c}/{i}.png": _rgb(seed=i) for c in ("cat", "dog") for i in (1, 2, 3)}}
    train, test = _folder(tmp_path / "train", images), _folder(tmp_path / "test", images)
    dm = ImageDataModule(source="folder", train_path=str(train), test_path=str(test), val_fraction=0.0,
                         batch_size=7)  # fmt: skip
    dm.setup()
    assert dm.in_channels == 3 and dm.data_config["input_size"] == (3, 12, 12)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (7, 3, 12, 12)
    assert not torch.equal(x[1, 0], x[1, 1])  # an RGB image keeps its colour
    torch.testing.assert_close(x[0, 0], x[0, 1])  # the grey one is grey in all three channels
    # a palette with one colour entry is colour; a GIF of a grey image (a grey palette) is not
    palette = _rgb().convert("P")
    for colour_image, expected in ((palette, 3), (grey, 1)):
        only_grey = {f"{c}/{i}.gif": grey for c in ("cat", "dog") for i in (0, 1)} | {
            "dog/2.gif": colour_image
        }
        root = _folder(tmp_path / f"gif{expected}", only_grey)
        dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
        assert dm.in_channels == expected, expected


def test_16_bit_and_float_images_read_as_their_8_bit_equivalent(tmp_path):
    """The same grey ramp saved as 8-bit, 16-bit (PNG and 32-bit integer TIFF) and float TIFF reads as one image:
    Pillow's ``convert`` clipped the 16-bit one to all but white and the float one to black (trial 18). Floats
    outside 0-1 are refused at the header check, naming the file."""
    ramp = np.linspace(0, 1, 144).reshape(12, 12)
    images = {
        "a/8.png": Image.fromarray(np.rint(ramp * 255).astype(np.uint8)),
        "a/16.png": Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)),
        "b/32.tif": Image.fromarray(np.rint(ramp * 65535).astype(np.int32)),
        "b/float.tif": Image.fromarray(ramp.astype(np.float32)),
    }
    root = _folder(tmp_path / "train", images)
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0,
                         batch_size=4)  # fmt: skip
    dm.setup()
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 1, 12, 12)
    for other in x[1:]:
        torch.testing.assert_close(other, x[0], atol=1.01 / 255 / min(dm.data_config["std"]), rtol=0)
    # the hub source (datasets' imagefolder) holds them as one 8-bit array, its statistics in 0-1 (review: the
    # 16-bit values were stacked as they are and divided by 255)
    hub = ImageDataModule(source="hub", train_path=str(root), val_fraction=0.0, test_fraction=0.5)
    hub.setup()
    held = np.concatenate([hub.splits[s].images for s in ("train", "test")])
    assert held.dtype == np.uint8 and held.shape == (4, 12, 12)
    assert np.abs(held.astype(int) - np.rint(ramp * 255)).max() <= 1
    assert 0 < hub.data_config["mean"][0] < 1 and 0 < hub.data_config["std"][0] < 1
    sixteen = _folder(
        tmp_path / "sixteen", {f"{c}/{i}.png": images["a/16.png"] for c in "ab" for i in range(2)}
    )
    hub = ImageDataModule(source="hub", train_path=str(sixteen), val_fraction=0.0, test_fraction=0.5)
    hub.setup()  # every image of one mode (I;16): stacked as it was, before
    assert hub.splits["train"].images.dtype == np.uint8 and 0 < hub.data_config["mean"][0] < 1
    Image.fromarray((ramp * 3).astype(np.float32)).save(root / "b" / "bright.tif")
    with pytest.raises(
        DataError, match=r"bright.tif: floating-point pixels from 0 to 3; read as 0 \(black\) to 1"
    ):
        ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0).setup()


def test_the_most_common_image_size_is_the_input_size(tmp_path):
    """An odd first image (8x8 among 12x12) neither sets the size nor is dropped: it is resized, with a warning."""
    images = {"cat/0.png": _rgb(8), **{f"{c}/{i}.png": _rgb(seed=i) for c in ("cat", "dog") for i in (1, 2)}}
    root = _folder(tmp_path / "train", images)
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"1 of 5 training images are not 12x12 .* e\.g\. .*cat/0\.png"):
        dm.setup()
    assert dm.img_size == 12 and dm.data_config["input_size"] == (3, 12, 12)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 12, 12)


def test_the_input_shape_is_read_from_headers_only(tmp_path, monkeypatch):
    """A large folder stays fast: deciding channels and size decodes no image."""
    from PIL import ImageFile

    images = {
        "cat/0.png": Image.new("L", (12, 12)),
        "cat/1.jpg": _rgb(16),
        "dog/0.png": _rgb(),
        "dog/1.bmp": _rgb(16),
    }
    root = _folder(tmp_path / "train", images)

    def no_decoding(self):
        raise AssertionError(f"{self.filename} was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
    with pytest.warns(UserWarning, match="2 of 4 training images are not 16x16"):
        assert dm.data_config["input_size"] == (3, 16, 16)  # a tie of sizes: the largest


def test_files_the_reader_does_not_take_are_counted_in_one_warning(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "train", per_class=2)
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "dog" / "Thumbs.db").write_bytes(b"\0" * 8)
    _rgb().save(root / "dog" / "photo.jfif", format="JPEG")
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
    with pytest.warns(
        UserWarning, match=r"skipped 3 file\(s\) .*cat/notes.txt, dog/Thumbs.db, dog/photo.jfif"
    ) as seen:
        dm.setup()
    assert len([w for w in seen if "skipped" in str(w.message)]) == 2  # once per folder read: train and test
    import warnings

    from lightning.pytorch.utilities import rank_zero_only

    with monkeypatch.context() as other, warnings.catch_warnings(record=True) as other_rank:
        other.setattr(rank_zero_only, "rank", 1)  # another process of a DDP run: rank 0 says it, once
        warnings.simplefilter("always")
        ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0).setup()
    assert not [w for w in other_rank if "skipped" in str(w.message)]
    assert len(dm.splits["train"]) == 4
    (root / ".ipynb_checkpoints").mkdir()  # Jupyter's: not a class; macOS's ._ files: not images
    (root / "dog" / "._0.png").write_bytes((root / "dog" / "0.png").read_bytes())
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"skipped 5 file\(s\) or hidden folder\(s\) .*: .ipynb_checkpoints, "
                                         r"cat/notes.txt, dog/._0.png, ..."):  # fmt: skip
        dm.setup()
    assert dm.labels == ["cat", "dog"] and len(dm.splits["train"]) == 4
    # an image beside the class folders, in no class: not read, and said (trial 29: unsaid); a file given for
    # the folder is named as a file
    (root / "stray.png").write_bytes((root / "cat" / "0.png").read_bytes())
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0)
    with pytest.warns(
        UserWarning, match=r"train: 1 file\(s\) beside the class folders, in no class, not read: stray.png"
    ):
        dm.setup()
    assert len(dm.splits["train"]) == 4
    with pytest.raises(
        DataError, match=r"stray.png: a file, not a folder \(expected a folder with one subfolder"
    ):
        ImageDataModule(source="folder", train_path=str(root / "stray.png"), val_fraction=0.0).setup()
    (root / "stray.png").unlink()
    # a class folder's own subfolders are that class, as torchvision's ImageFolder reads them; a class that
    # holds only subfolders is a class too
    (root / "cat" / "2019").mkdir()
    (root / "cat" / "2019" / "nested.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "owl" / "2020").mkdir(parents=True)
    (root / "owl" / "2020" / "0.png").write_bytes((root / "dog" / "1.png").read_bytes())
    dm = ImageDataModule(source="folder", train_path=str(root), test_path=str(root), val_fraction=0.0,
                         check_duplicates=False)  # fmt: skip
    with pytest.warns(UserWarning, match="skipped"):
        dm.setup()
    assert dm.labels == ["cat", "dog", "owl"]
    files = [str(f.relative_to(root)) for f in dm.splits["train"].files]
    assert "cat/2019/nested.png" in files and "owl/2020/0.png" in files and len(files) == 6
    assert dm.labels[dm.splits["train"].labels[files.index("cat/2019/nested.png")]] == "cat"
    with pytest.raises(DataError, match=r"data.predict_path: .*0.png is a file: give the folder"):
        ImageDataModule(source="folder", train_path=str(root), test_path=str(root),
                        predict_path=str(root / "dog" / "0.png")).setup()  # fmt: skip


def test_a_jpeg_cut_short_is_found_when_the_folder_is_read_and_one_with_data_after_its_end_is_not(tmp_path):
    """PIL's verify reads no JPEG data: a JPEG cut short (header whole) passed the check and stopped training at
    its first load. One without its end marker at the end is decoded once now; a whole one with bytes after its
    end marker (some cameras append data) still loads."""
    import io

    from PIL import Image

    from datamodules.image_sources import read_folder

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name / "a.jpg")
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "dog" / "tail.jpg").write_bytes(buffer.getvalue() + b"appended by a camera")
    split, classes = read_folder(tmp_path)
    assert classes == ["cat", "dog"] and len(split.files) == 3
    (tmp_path / "dog" / "cut.jpg").write_bytes(
        buffer.getvalue()[:-171]
    )  # the header whole, the last rows gone
    with pytest.raises(
        DataError, match=r"dog/cut.jpg: unreadable or corrupt image \(image file is truncated"
    ):
        read_folder(tmp_path)


def test_the_hub_sources_one_array_takes_arrays_and_one_grey_mode():
    """Images as arrays (an Array2D or Sequence column) stack as they are, one of another shape is named;
    grey images of several modes stay grey."""
    from datamodules.image_sources import _one_array

    assert _one_array([np.zeros((4, 4)), np.ones((4, 4))], "d [train]").shape == (2, 4, 4)
    with pytest.raises(DataError, match=r"d \[train\]: image 2 has shape \(4, 5\), image 1 \(4, 4\)"):
        _one_array([np.zeros((4, 4)), np.zeros((4, 5))], "d [train]")
    grey = [Image.new("L", (4, 4), 7), Image.new("LA", (4, 4), (7, 255)), Image.new("1", (4, 4), 1)]
    assert _one_array(grey, "d [train]").shape == (3, 4, 4)
