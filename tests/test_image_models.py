"""Image models: ResNet and ViT equal timm's (counts, logits), patch embeddings, the course's CNN, every
image config trains a step, selective accuracy."""

import pytest
import timm
import torch
from conftest import tiny_compare
from image_data import VISION, image_args
from PIL import Image

from experiments.cli import ExperimentCLI
from experiments.compare import Comparison
from lit_models.image_nets import MnistCNN
from lit_models.resnet import ResNet
from lit_models.vit import PatchEmbedding, VisionTransformer, patchify, timm_vit_state_dict


def test_resnet18_counts_and_logits_equal_timm():
    theirs = timm.create_model("resnet18", num_classes=10).eval()
    ours = ResNet(10).eval()
    assert sum(p.numel() for p in ResNet(1000).parameters()) == 11_689_512
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in ResNet(1000, depth=34).parameters()) == sum(
        p.numel() for p in timm.create_model("resnet34").parameters()
    )


def test_vit_counts_and_logits_equal_timm():
    assert sum(p.numel() for p in VisionTransformer(1000).parameters()) == 86_567_656  # vit_base_patch16_224
    course = VisionTransformer(1000, final_norm=False, pos_embed_class=False)
    assert sum(p.numel() for p in course.parameters()) == 86_565_352
    theirs = timm.create_model("vit_small_patch16_224", num_classes=7, img_size=32, patch_size=8).eval()
    ours = VisionTransformer(7, img_size=32, patch_size=8, embed_dim=384, depth=12, num_heads=6).eval()
    ours.load_state_dict(timm_vit_state_dict(theirs.state_dict()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    # the course's variant matches timm's no_embed_class + no final norm
    theirs = timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=3,
        img_size=32,
        patch_size=8,
        final_norm=False,
        no_embed_class=True,
    ).eval()
    ours = VisionTransformer(
        3,
        img_size=32,
        patch_size=8,
        embed_dim=192,
        depth=12,
        num_heads=3,
        final_norm=False,
        pos_embed_class=False,
    ).eval()
    ours.load_state_dict(timm_vit_state_dict(theirs.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_patch_embedding_conv_and_reshape_agree():
    torch.manual_seed(0)
    conv = PatchEmbedding(4, 3, 16, "conv")
    linear = PatchEmbedding(4, 3, 16, "linear")
    with torch.no_grad():
        linear.proj.weight.copy_(conv.proj.weight.reshape(16, -1))
        linear.proj.bias.copy_(conv.proj.bias)
    x = torch.randn(2, 3, 12, 8)
    torch.testing.assert_close(linear(x), conv(x), atol=1e-5, rtol=1e-5)
    assert patchify(x, 4).shape == (2, 6, 48)


def test_mnist_cnn_has_the_course_count():
    assert sum(p.numel() for p in MnistCNN(10).parameters()) == 1_199_882


IMAGE_MODELS = ["mnist_cnn.yaml", "resnet.yaml", "vit.yaml", "lstm_patches.yaml", "transformer_patches.yaml"]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_fast_dev_run_each_image_model(name, tmp_path):
    cli = ExperimentCLI(args=[*image_args(tmp_path, name), "--trainer.fast_dev_run=true"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = cli.trainer.callback_metrics
    assert {"test/acc", "test/f1", "test/ece"} <= set(metrics)


def test_selective_accuracy_and_coverage_by_hand():
    from lit_models.metrics import SelectiveAccuracy

    logits = torch.log(torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]]))
    target = torch.tensor([0, 0, 0, 1])
    coverage, accuracy = SelectiveAccuracy(0.8, "coverage"), SelectiveAccuracy(0.8, "accuracy")
    coverage.update(logits, target)
    accuracy.update(logits, target)
    # answered: rows 0 (right) and 2 (wrong); rows 1 and 3 are "unknown"
    assert coverage.compute().item() == pytest.approx(0.5) and accuracy.compute().item() == pytest.approx(0.5)
    nothing = SelectiveAccuracy(0.99, "accuracy")
    nothing.update(logits, target)
    assert torch.isnan(nothing.compute())


def test_a_tiny_vision_compare(tmp_path, monkeypatch):
    shipped = Comparison.load(VISION / "compare.yaml")
    assert len(shipped.models) == 7 and shipped.metric == "test/acc"
    monkeypatch.chdir(tmp_path)
    models = {"CNN": VISION / "mnist_cnn.yaml", "Transformer (patches)": VISION / "transformer_patches.yaml"}
    results = tiny_compare(tmp_path, "tiny-vision", None, models, 1, image_args(tmp_path))
    runs = results["runs"]
    assert [r["model"] for r in runs] == ["CNN", "Transformer (patches)"]
    assert all({"test/acc", "test/ece"} <= set(r["test"]) for r in runs)
    assert (tmp_path / "out" / "comparison.png").exists()


def test_an_image_folder_predicts_files_and_class_names_and_a_checkpoint_keeps_its_classes(in_tmp):
    """predictions.tsv names each row's image file, the predicted class and one probability per class; a
    checkpoint tested on folders of other classes (as many) is refused rather than scored against wrong names."""
    from conftest import run_main
    from image_data import write_folder

    write_folder(in_tmp / "train", classes=("cat", "dog"), per_class=5)
    write_folder(in_tmp / "test", classes=("cat", "dog"), per_class=2)
    write_folder(in_tmp / "fruit", classes=("apple", "banana"), per_class=2)
    args = ["--config", str(VISION / "mnist_cnn.yaml"), "--data.source=folder", "--data.train_path=train",
            "--data.batch_size=4", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip
    ExperimentCLI(args=["fit", *args, "--data.test_path=test", "--trainer.max_epochs=1"])
    ckpt = next(in_tmp.rglob("last.ckpt"))
    ExperimentCLI(args=["predict", *args, "--data.test_path=test", f"--ckpt_path={ckpt}"])
    rows = [r.split("\t") for r in next(in_tmp.rglob("predictions.tsv")).read_text().splitlines()]
    assert rows[0] == ["index", "file", "label", "predicted", "p_cat", "p_dog"] and len(rows) == 5
    assert [r[1] for r in rows[1:]] == [f"test/{c}/{i}.png" for c in ("cat", "dog") for i in range(2)]
    assert [r[2] for r in rows[1:]] == ["cat", "cat", "dog", "dog"]  # the class each row is scored against
    assert all(r[3] == ("cat" if float(r[4]) >= float(r[5]) else "dog") for r in rows[1:])
    assert all(abs(float(r[4]) + float(r[5]) - 1) < 1e-5 for r in rows[1:])
    new = in_tmp / "new"  # new images as they come: no class folders, a grey one, a hidden folder
    new.mkdir()
    (in_tmp / "test" / "dog" / "1.png").rename(new / "b.png")
    Image.open(in_tmp / "test" / "cat" / "0.png").convert("L").save(new / "a.png")
    (new / ".ipynb_checkpoints").mkdir()
    (new / ".ipynb_checkpoints" / "a.png").write_bytes((new / "a.png").read_bytes())
    next(in_tmp.rglob("predictions.tsv")).unlink()
    ExperimentCLI(args=["predict", *args, "--data.test_path=test", f"--data.predict_path={new}",
                        f"--ckpt_path={ckpt}"])  # fmt: skip
    rows = [r.split("\t") for r in next(in_tmp.rglob("predictions.tsv")).read_text().splitlines()]
    assert [r[1] for r in rows[1:]] == [str(new / "a.png"), str(new / "b.png")] and rows[0][2:] == ["predicted",
                                                                                                    "p_cat", "p_dog"]  # fmt: skip
    result = run_main("test", *args, "--data.train_path=fruit", "--data.test_path=fruit", f"--ckpt_path={ckpt}",
                      "--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir=elsewhere",
                      cwd=in_tmp)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (in_tmp / "elsewhere").exists()  # refused before the logger wrote its config
    # test reads its folder with the checkpoint's classes (data.checkpoint), so a class folder outside them is named
    assert result.stderr.strip().splitlines()[-1] == (
        "error: fruit/apple: class 'apple' is not one of the training classes ['cat', 'dog']"
    )


def test_a_damaged_weights_file_is_named_as_damaged(tmp_path):
    """Not "does not fit the model", which is what timm's error said of a file cut short."""
    from safetensors.torch import save_file

    from archbench.errors import PretrainedError
    from lit_models.image_nets import TimmNet

    whole = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, whole)
    (tmp_path / "cut.safetensors").write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(
        PretrainedError, match=r"cut.safetensors is damaged \(cut short\?\) or not a weights file"
    ):
        TimmNet("resnet18", num_outputs=3, weights_file=str(tmp_path / "cut.safetensors"))


def test_images_to_predict_of_another_size_are_said_as_fit_says_them(tmp_path):
    """Trial 32: a 64x50 image was predicted, resized and centre-cropped to 12x12, unsaid (fit says it)."""
    import warnings

    from image_data import write_folder

    from datamodules.images import ImageDataModule

    train = write_folder(tmp_path / "train", per_class=4, size=12)
    new = write_folder(tmp_path / "new", classes=("a",), per_class=2, size=12)
    Image.new("RGB", (64, 50)).save(new / "a" / "big.png")
    data = ImageDataModule(source="folder", train_path=str(train), predict_path=str(new), batch_size=2)
    with pytest.warns(UserWarning, match=r"^data.predict_path: 1 of 3 images are not 12x12 \(the size the model was "
                      r"trained at\) and are resized by their shorter side and centre-cropped to it, e.g. .*big.png$"):  # fmt: skip
        data.setup("predict")
    (new / "a" / "big.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageDataModule(source="folder", train_path=str(train), predict_path=str(new), batch_size=2).setup(
            "predict"
        )


def test_colour_images_given_to_a_grey_model_are_said(tmp_path):
    """Trial 23: a model trained on grey images reads colour ones as grey, their luminance; now said."""
    from image_data import write_folder

    from datamodules.image_sources import read_images
    from datamodules.images import _say_colour_read_as_grey

    folder = write_folder(tmp_path / "new", classes=("a",), per_class=2)  # colour
    Image.open(folder / "a" / "0.png").convert("L").save(folder / "a" / "2.png")
    split = read_images(folder)
    with pytest.warns(UserWarning, match=r"data.predict_path: 2 of 3 images have colour \(the first: .*a/0.png\); the "
                      r"model was trained on grey images, so they are read as grey"):  # fmt: skip
        _say_colour_read_as_grey(split, channels=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _say_colour_read_as_grey(split, channels=3)  # a colour model: nothing to say
