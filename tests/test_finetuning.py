"""Fine-tuning: weights from a file, frozen then unfrozen backbones, EMA, layer-wise learning-rate decay,
the optimizer and schedule swapped from the command line, lr_find, our weights exported for timm, the
transfer experiment."""

import pytest
import timm
import torch
from conftest import run_main
from image_data import VISION, image_args
from safetensors.torch import load_file

from experiments.checkpoints import LastCheckpoint
from experiments.cli import ExperimentCLI
from experiments.compare import Comparison
from lit_models.image_nets import TimmNet


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


def test_lr_find_command(tmp_path):
    out = tmp_path / "lr.png"
    args = [a for a in image_args(tmp_path, "mnist_cnn.yaml") if not a.startswith("--trainer.logger")]
    result = run_main("lr_find", *args, "--num_training=30", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lr_find: suggested --model.optimizer.lr" in result.stdout and out.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "lightning_logs").exists()


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
    result = run_main("export", *args, "--ckpt", ckpt, "--out", str(out), cwd=tmp_path)
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
    result = run_main("export", *args, "--ckpt", ckpt, "--out", str(out), cwd=tmp_path)
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
