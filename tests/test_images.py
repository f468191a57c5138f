"""Images: IDX files and image folders, bad input, patch sequences; ResNet/ViT parity with timm; image CLI runs."""

import gzip
import struct

import numpy as np
import pytest
import timm
import torch
from conftest import run_module, tiny_compare
from image_data import VISION, fake_fashion_mnist, image_args, write_folder, write_idx
from safetensors.torch import load_file

from archbench.errors import DataError
from datamodules.images import ImageDataModule
from experiments.checkpoints import LastCheckpoint
from experiments.cli import ExperimentCLI
from experiments.compare import Comparison
from lit_models.image_nets import MnistCNN, TimmNet
from lit_models.resnet import ResNet
from lit_models.vit import PatchEmbedding, VisionTransformer, patchify, timm_vit_state_dict


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


# --- parity with timm ----------------------------------------------------------------------------------------


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


# --- the command line ------------------------------------------------------------------------------------------

IMAGE_MODELS = ["mnist_cnn.yaml", "resnet.yaml", "vit.yaml", "lstm_patches.yaml", "transformer_patches.yaml"]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_fast_dev_run_each_image_model(name, tmp_path):
    cli = ExperimentCLI(args=[*image_args(tmp_path, name), "--trainer.fast_dev_run=true"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = cli.trainer.callback_metrics
    assert {"test/acc", "test/f1", "test/ece"} <= set(metrics)


def test_missing_fashion_mnist_offline_is_one_clear_line(tmp_path):
    args = image_args(tmp_path, "mnist_cnn.yaml")
    result = run_module("fit", *args, f"--data.root={tmp_path / 'nothing'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "python -m experiments data fashion_mnist" in result.stderr.strip().splitlines()[-1]


# --- fine-tuning ---------------------------------------------------------------------------------------------


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_local_weights_file_then_frozen_backbone_then_unfrozen(tmp_path):
    """timm weights from a file the test writes (the head dropped for 10 classes); epoch 0 trains only the
    head (no gradient, unchanged backbone weights and statistics); epoch 1 trains the backbone too."""
    from lightning.pytorch.callbacks import Callback
    from safetensors.torch import save_file

    source = timm.create_model("efficientnet_lite0")
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    args = image_args(tmp_path, "efficientnet_lite0.yaml")
    args += [f"--model.net.init_args.weights_file={weights}", "--data.img_size=32", "--trainer.max_epochs=2"]
    args += [
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.val_check_interval=1.0",
    ]
    cli = ExperimentCLI(args=args, run=False)
    net = cli.model.net
    loaded = net.model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("classifier"):
            torch.testing.assert_close(loaded[key], value)

    snapshots = {}

    class Record(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            snapshots[f"start{trainer.current_epoch}"] = _snapshot(pl_module.net)

        def on_after_backward(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                named = [
                    (n, p)
                    for n, p in pl_module.net.named_parameters()
                    if not n.startswith("model.classifier")
                ]
                with_grad = [(n, p.requires_grad) for n, p in named if p.grad is not None]
                assert not with_grad, f"frozen backbone parameters got gradients: {with_grad[:5]}"

        def on_train_epoch_end(self, trainer, pl_module):
            snapshots[f"end{trainer.current_epoch}"] = _snapshot(pl_module.net)

    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    head = {k for k in snapshots["start0"] if k.startswith("model.classifier")}
    frozen_epoch = _changed(snapshots["start0"], snapshots["end0"])
    assert frozen_epoch and frozen_epoch <= head  # only the head moved
    unfrozen_epoch = _changed(snapshots["start1"], snapshots["end1"])
    assert len(unfrozen_epoch - head) > 100  # the backbone trains after unfreezing


def test_ema_weights_are_the_ones_evaluated(tmp_path):
    from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

    cli = ExperimentCLI(
        args=[*image_args(tmp_path, "mnist_cnn.yaml"), "--trainer.max_epochs=1", "--trainer.limit_train_batches=4",
              "--trainer.limit_val_batches=1", "--trainer.val_check_interval=1.0", "--trainer.num_sanity_val_steps=0"],
        run=False,
    )  # fmt: skip
    ema = EMAWeightAveraging(decay=0.5)
    seen = {}

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["raw"] = _snapshot(pl_module.net)

        def on_validation_epoch_start(self, trainer, pl_module):
            seen["evaluated"] = _snapshot(pl_module.net)
            seen["average"] = {
                k: v.detach().clone() for k, v in ema._average_model.module.net.state_dict().items()
            }

    cli.trainer.callbacks += [ema, Record()]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # validation ran on the averaged weights (the raw ones are parked in the average model meanwhile)
    assert _changed(seen["raw"], seen["evaluated"])
    for key, value in seen["average"].items():
        torch.testing.assert_close(value, seen["raw"][key])
    # after training the model holds the averages
    final = _snapshot(cli.model.net)
    for key, value in seen["evaluated"].items():
        torch.testing.assert_close(final[key], value)


def _optimizer(cli):
    cli.model._stepping_batches = lambda: 10  # the run's length, which only a fitting trainer knows
    return cli.model.configure_optimizers()["optimizer"]


def test_layer_wise_lr_decay_for_our_vit_as_timm_groups_its_own(tmp_path):
    """Our ViT's groups (through timm's param_groups_layer_decay) put each parameter where timm puts the
    same parameter of its own ViT: the head at the full rate, each layer below at 0.5x the one above."""
    from timm.optim import param_groups_layer_decay

    args = [*image_args(tmp_path, "vit.yaml"), "--model.layer_decay=0.5", "--model.optimizer.lr=0.1"]
    cli = ExperimentCLI(args=args, run=False)
    optimizer = _optimizer(cli)
    net = cli.model.net
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in net.parameters())  # every parameter exactly once
    rates = [lr_of[id(p)] for p in (net.cls_token, *(b.attn.qkv.weight for b in net.blocks), net.head.weight)]
    assert rates[-1] == 0.1 and all(
        b == pytest.approx(2 * a) for a, b in zip(rates[:-2], rates[1:-1], strict=True)
    )
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(net.head.weight) in decayed and id(net.head.bias) not in decayed
    assert id(net.pos_embed) not in decayed and id(net.cls_token) not in decayed  # timm's no_weight_decay()
    theirs = timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=4, embed_dim=64, depth=4,
                               num_heads=4, mlp_ratio=2.0, in_chans=1, num_classes=10)  # fmt: skip
    timm_scales = {}
    names = {id(p): n for n, p in theirs.named_parameters()}
    for group in param_groups_layer_decay(theirs, 0.01, theirs.no_weight_decay(), layer_decay=0.5):
        timm_scales.update({names[id(p)]: group["lr_scale"] for p in group["params"]})
    ours = {n.replace("linear1", "mlp.fc1").replace("linear2", "mlp.fc2"): lr_of[id(p)] / 0.1
            for n, p in net.named_parameters()}  # fmt: skip
    assert ours == pytest.approx(timm_scales)


def test_layer_wise_lr_decay_for_a_timm_model_inside_timmnet(tmp_path):
    args = [*image_args(tmp_path, "efficientnet_lite0_scratch.yaml"), "--data.img_size=32"]
    cli = ExperimentCLI(args=[*args, "--model.layer_decay=0.7", "--model.optimizer.lr=0.01"], run=False)
    optimizer = _optimizer(cli)
    model = cli.model.net.model
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.classifier.weight)] == pytest.approx(0.01)
    assert lr_of[id(model.conv_stem.weight)] < lr_of[id(model.blocks[3][0].conv_pw.weight)] < 0.01
    assert len(lr_of) == sum(1 for _ in model.parameters())


def test_optimizer_and_schedule_swap_from_the_command_line_and_keep_the_groups(tmp_path):
    """The course's MNIST recipe (Adadelta lr 1.0, StepLR gamma 0.7 per epoch) is a config; SGD from options."""
    cli = ExperimentCLI(args=image_args(tmp_path, "mnist_cnn_course.yaml"), run=False)
    optimizer = _optimizer(cli)
    assert isinstance(optimizer, torch.optim.Adadelta) and optimizer.defaults["lr"] == 1.0
    config = cli.model.configure_optimizers()["lr_scheduler"]
    assert isinstance(config["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["scheduler"].gamma == 0.7 and config["interval"] == "epoch"
    kinds = [{p.ndim >= 2 for p in g["params"]} for g in optimizer.param_groups]
    assert sorted(map(sorted, kinds)) == [
        [False],
        [True],
    ]  # weights apart from biases, whatever the optimizer
    sgd = [*image_args(tmp_path, "mnist_cnn.yaml"), "--model.optimizer=torch.optim.SGD",
           "--model.optimizer.momentum=0.9", "--model.optimizer.lr=0.05"]  # fmt: skip
    optimizer = _optimizer(ExperimentCLI(args=sgd, run=False))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.01}  # biases: none


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
    with pytest.raises(DataError, match="image_column|no column 'picture'"):
        ImageDataModule(source="hub", train_path=str(tmp_path / "hf"), image_column="picture").setup()


def test_lr_find_command(tmp_path):
    out = tmp_path / "lr.png"
    args = [a for a in image_args(tmp_path, "mnist_cnn.yaml") if not a.startswith("--trainer.logger")]
    result = run_module("lr_find", *args, "--num_training=30", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lr_find: suggested --model.optimizer.lr" in result.stdout and out.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "lightning_logs").exists()


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


@pytest.mark.parametrize(
    "model_file, extra, timm_name, timm_kwargs",
    [
        ("resnet.yaml", ["--model.net.init_args.width=64", "--model.net.init_args.small_input=false"], "resnet18",
         {"in_chans": 1}),
        ("vit.yaml", [], "vit_tiny_patch16_224",
         {"in_chans": 1, "img_size": 28, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}),
    ],
)  # fmt: skip
def test_our_trained_weights_fine_tune_through_the_timm_local_file_path(
    tmp_path, model_file, extra, timm_name, timm_kwargs
):
    """Train ours a step, export the checkpoint as timm-named safetensors, load it with timm: same logits."""
    args = [*image_args(tmp_path, model_file), *extra]
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    cli = ExperimentCLI(args=[*args, *short], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    ckpt = next(c.last_model_path for c in cli.trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint))
    out = tmp_path / "ours.safetensors"
    result = run_module("export", *args, "--ckpt", ckpt, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = TimmNet(timm_name, num_outputs=10, weights_file=str(out), model_kwargs=timm_kwargs).eval()
    cli.model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])  # the exported weights
    ours = cli.model.net.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), atol=1e-5, rtol=1e-5)
    # another class count: the backbone loads, the head is new (as for any timm weights file)
    five = TimmNet(timm_name, num_outputs=5, weights_file=str(out), model_kwargs=timm_kwargs)
    assert five.model.get_classifier().out_features == 5
    # the file carries the input the weights were trained on: timm's data config (and so the data) takes it
    from timm.data import resolve_data_config

    trained_on = cli.datamodule.data_config
    config = resolve_data_config(model=theirs)
    assert config["input_size"] == (1, 28, 28)
    assert config["mean"] == pytest.approx(trained_on["mean"])
    assert config["std"] == pytest.approx(trained_on["std"])
    # other classes, as many of them: reset_head gives a new head, the backbone stays
    new = TimmNet(timm_name, num_outputs=10, weights_file=str(out), model_kwargs=timm_kwargs, reset_head=True)
    assert not torch.equal(new.model.get_classifier().weight, theirs.model.get_classifier().weight)
    backbone = {k: v for k, v in theirs.model.state_dict().items() if not k.startswith(("fc.", "head."))}
    assert all(torch.equal(new.model.state_dict()[k], v) for k, v in backbone.items())


@pytest.mark.parametrize(
    "arch, pretrain_file",
    [("vit", VISION / "vit.yaml"), ("resnet", VISION / "transfer" / "resnet.yaml")],
)
def test_transfer_experiment_pretrain_export_fine_tune(tmp_path, monkeypatch, arch, pretrain_file):
    """`make vision-transfer` on small data: pre-train on five classes, export, fine-tune on the other five."""
    monkeypatch.chdir(tmp_path)
    transfer = VISION / "transfer"
    args = [*image_args(tmp_path, "transfer/pretrain.yaml"), "--config", str(pretrain_file)]
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    cli = ExperimentCLI(args=[*args, *short], run=False)
    assert cli.datamodule.num_outputs == 5
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    out = tmp_path / "runs" / "vision_transfer" / f"{arch}.safetensors"  # where the fine-tune config looks
    out.parent.mkdir(parents=True)
    ckpt = next(c.last_model_path for c in cli.trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint))
    result = run_module("export", *args, "--ckpt", ckpt, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    comparison = Comparison.load(transfer / "compare.yaml")
    files = [comparison.model_file(m) for m in comparison.models]
    used = {p.name for p in files if p.parent == transfer} | {
        "pretrain.yaml",
        "compare.yaml",
    }
    assert used == {p.name for p in transfer.glob("*.yaml")}  # every file of the experiment is in use
    fine_tune = [
        *comparison.run_args(f"{'ViT' if arch == 'vit' else 'ResNet-18'} (our weights)"),
        *image_args(tmp_path),
    ]
    fine_tune += ["--data.train_size=20"]
    fine_tune += ["--trainer.max_epochs=2", "--trainer.limit_val_batches=1"]
    cli = ExperimentCLI(args=fine_tune, run=False)
    assert cli.datamodule.labels == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    exported = load_file(out)
    backbone = {k for k in exported if not k.startswith(("fc.", "head."))}
    loaded = cli.model.net.model.state_dict()
    assert all(torch.equal(loaded[k], exported[k]) for k in backbone)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert any(not torch.equal(cli.model.net.model.state_dict()[k], exported[k]) for k in backbone)


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
