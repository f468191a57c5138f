"""Fine-tuning: weights from a file, frozen then unfrozen backbones, EMA, layer-wise learning-rate decay,
the optimizer and schedule swapped from the command line, lr_find, our weights exported for timm, the
transfer experiment."""

import json
import re
from pathlib import Path

import pytest
import timm
import torch
from conftest import last_line, run_main
from image_data import VISION, image_args
from safetensors.torch import load_file

from archbench.errors import ConfigError, PretrainedError
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
    # its norm layers too, statistics included (trial 29: kept in eval mode for good after the first validation)
    assert any(k.endswith("running_mean") for k in unfrozen_epoch)

    # predict from the run's checkpoint on a machine without the starting weights (trial 25: refused for want
    # of the weights file, which the checkpoint's weights replace)
    from PIL import Image

    ckpt = tmp_path / "run.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    weights.unlink()
    new = tmp_path / "new"
    new.mkdir()
    Image.new("L", (28, 28), 128).save(new / "a.png")
    result = run_main("predict", *args, f"--ckpt_path={ckpt}", f"--data.predict_path={new}",
                      f"--trainer.default_root_dir={tmp_path / 'p'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "the training files are not read, nor model.net.init_args.weights_file (the checkpoint holds"
        in result.stdout
    )
    assert len(next(tmp_path.rglob("predictions.tsv")).read_text().splitlines()) == 2


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


def test_lr_find_command(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    saved = []  # the range test's own save of the model before it starts (removed after): not in the cwd
    save = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self, path, *a, **k: (saved.append(Path(path)),
                                                                                 save(self, path, *a, **k)))  # fmt: skip
    out = tmp_path / "lr.svg"  # the format its name asks for (it was always PNG bytes)
    args = [a for a in image_args(tmp_path, "mnist_cnn.yaml") if not a.startswith("--trainer.logger")]
    # one epoch is 7 batches of the 54 training images: the test's 30 steps run past the config's epoch budget
    # a fine-tuning callback in the config is left out of the test as the others are, and said (trial 29)
    finetuning = "--trainer.callbacks+=experiments.callbacks.BackboneFinetuning"
    result = run_main(
        "lr_find",
        *args,
        finetuning,
        "--num_training=30",
        "--trainer.max_epochs=1",
        f"--out={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lr_find: BackboneFinetuning is left out of the range test" in result.stdout
    assert "lr_find: suggested --model.optimizer.lr" in result.stdout and "<svg" in out.read_text()[:1000]
    ran = re.search(r"lr_find: (\d+) of 30 steps ran", result.stdout)  # fewer: the loss diverged, said so
    assert ran and int(ran.group(1)) > 7, result.stdout
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "lightning_logs").exists()
    assert saved and all(tmp_path not in p.resolve().parents and not p.exists() for p in saved), saved


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
    tmp_path, model_file, extra, timm_name, timm_kwargs, capsys
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
    assert "replaced" not in result.stdout
    # again over it: replaced, and said (trial 32: unsaid)
    from experiments.export import main as export

    export([*args, "--ckpt", ckpt, "--out", str(out)])
    assert f"-> {out} (the file there replaced)" in capsys.readouterr().out
    # it says, and the file records, the timm model that takes it
    said = re.search(
        r"--model.net.init_args.name (\S+) --model.net.init_args.model_kwargs '(.*?)'", result.stdout
    )
    assert said and said.group(1) == timm_name and json.loads(said.group(2)) == timm_kwargs
    from safetensors import safe_open

    with safe_open(out, framework="pt") as f:
        assert (
            f.metadata()["timm.name"] == timm_name
            and json.loads(f.metadata()["timm.model_kwargs"]) == timm_kwargs
        )
    # another architecture: one line with the first gap and what the file was made for (timm loads leniently
    # when the head is new, so this used to half-load silently)
    other_name, other_kwargs = (
        ("resnet34", timm_kwargs) if timm_name == "resnet18" else (timm_name, {**timm_kwargs, "depth": 5})
    )
    with pytest.raises(PretrainedError, match=rf"weights_file: .*ours.safetensors does not fit timm's {other_name} "
                       rf"with model_kwargs .*\(\d+ of the model's tensors not in the file \(the first: .*\); "
                       rf"it was exported for name: {timm_name}, model_kwargs: "):  # fmt: skip
        TimmNet(other_name, num_outputs=5, weights_file=str(out), model_kwargs=other_kwargs)
    # a file of another family, whose shared names differ in shape: every difference counted (trial 29: torch's
    # list said '4 difference(s)' of some hundred, its message cut mid-way)
    far = "efficientnet_lite0" if timm_name == "resnet18" else "resnet18"
    with pytest.raises(PretrainedError, match=rf"does not fit timm's {far} with model_kwargs \{{'in_chans': 1\}} \((\d+ "
                       r"of another shape \(the first: \S+ is \[[\d, ]+\] in the file, \[[\d, ]+\] in the model\); )?\d+ of "
                       r"the model's tensors not in the file \(the first: \S+\); \d+ of the file's not in the model"):  # fmt: skip
        TimmNet(far, num_outputs=5, weights_file=str(out), model_kwargs={"in_chans": 1})
    if model_file == "resnet.yaml":  # a config that builds another net: one line, before any weight is read
        other = run_main("export", *args, "--model.net.init_args.depth=34", "--ckpt", ckpt, "--out", "x.st",
                         cwd=tmp_path)  # fmt: skip
        assert other.returncode == 2 and "Traceback" not in other.stderr
        assert re.match(rf"error: --ckpt {re.escape(ckpt)} does not fit the model that --config builds \(.*"
                        r"net\.layer1\.2\.", last_line(other)), last_line(other)  # fmt: skip
        assert not (tmp_path / "x.st").exists()
        small = run_main("export", *args, "--model.net.init_args.small_input=true", "--ckpt", ckpt, "--out", "x.st",
                         cwd=tmp_path)  # fmt: skip  # the course's 3x3 stem: timm's ResNets have none
        assert small.returncode == 2 and last_line(small).startswith(
            "error: model.net: this ResNet has no timm counterpart (timm's resnet18/34 have a 7x7 stem with pooling"
        )
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


def test_a_timm_net_exports_its_own_weights_which_load_back_the_same(tmp_path):
    """A TimmNet (DINOv2 probes and fine-tunes) exports as our ViT and ResNet do: its own timm name, the size it
    was built for, its weights; ``export`` said it had "no timm counterpart"."""
    from safetensors.torch import save_file

    net = TimmNet("vit_tiny_patch16_224", num_outputs=3, img_size=32).eval()
    name, kwargs = net.timm_args()
    assert (name, kwargs) == ("vit_tiny_patch16_224", {"img_size": 32})
    save_file({k: v.contiguous() for k, v in net.timm_state_dict().items()}, tmp_path / "w.safetensors")
    back = TimmNet(
        name, num_outputs=3, weights_file=str(tmp_path / "w.safetensors"), model_kwargs=kwargs
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x))


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


TINY_DINOV2 = {"depth": 1, "embed_dim": 32, "num_heads": 2}  # timm's vit_small_patch14_dinov2 made small


@pytest.mark.parametrize("name", ["vit_small_patch14_dinov2", "convnext_atto", "resnet18"])
def test_frozen_backbone_trains_the_classifier_only_and_equals_the_timm_model(name):
    """A linear probe: every parameter but the classifier's is frozen (a ViT's class token and position
    embedding, a ConvNeXt's head norm included), the backbone stays in eval mode in training, and the output is
    timm's own forward with the same weights."""
    kwargs = {"model_kwargs": TINY_DINOV2} if "dinov2" in name else {}
    torch.manual_seed(0)
    net = TimmNet(name, 3, freeze_backbone=True, img_size=56, drop_rate=0.5, **kwargs)
    head = net.model.get_classifier()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {f"model.{n}" for n in _classifier_names(net.model, head)}
    net.train()
    in_head = {id(m) for m in head.modules()}
    leaves = [m for m in net.model.modules() if not list(m.children()) and id(m) not in in_head]
    assert leaves and not any(m.training for m in leaves)
    assert head.training
    x = torch.randn(4, 3, 56, 56)
    net.eval()
    torch.testing.assert_close(net(x), net.model(x), rtol=0, atol=1e-6)
    # what a fine-tuning callback freezes is everything but the classifier
    held = {id(p) for part in net.backbone_modules() for p in part.parameters()}
    assert held == {id(p) for p in net.model.parameters()} - {id(p) for p in head.parameters()}


def _classifier_names(model, head):
    ids = {id(p) for p in head.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def test_feature_cache_computes_each_input_once_and_changes_nothing():
    torch.manual_seed(0)
    net = TimmNet("vit_small_patch14_dinov2", 3, freeze_backbone=True, cache_features=True, img_size=28,
                  model_kwargs=TINY_DINOV2)  # fmt: skip
    plain = TimmNet(
        "vit_small_patch14_dinov2", 3, freeze_backbone=True, img_size=28, model_kwargs=TINY_DINOV2
    )
    plain.load_state_dict(net.state_dict())
    assert net.state_dict().keys() == plain.state_dict().keys()  # the cache is never saved
    calls = []
    net.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))  # timm's forward is not used...
    blocks = net.model.blocks[0]
    blocks.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))  # ...the backbone's block is
    x, y = torch.randn(4, 3, 28, 28), torch.randn(4, 3, 28, 28)
    torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    assert calls == [4] and (net.cache_hits, net.cache_misses) == (0, 4)
    mixed = torch.cat([x[2:], y[:1], x[:1]])  # seen, seen, new, seen
    torch.testing.assert_close(net(mixed), plain(mixed), rtol=0, atol=0)
    assert calls == [4, 1] and (net.cache_hits, net.cache_misses) == (3, 5)
    # the head trains on cached features: gradients reach it, and only it
    net(mixed).sum().backward()
    assert net.model.head.weight.grad is not None
    assert all(p.grad is None for n, p in net.named_parameters() if not n.startswith("model.head"))


def test_full_feature_cache_warns_once_and_stays_correct():
    torch.manual_seed(0)
    net = TimmNet("vit_small_patch14_dinov2", 3, freeze_backbone=True, cache_features=True, max_cached=3,
                  img_size=28, model_kwargs=TINY_DINOV2)  # fmt: skip
    plain = TimmNet(
        "vit_small_patch14_dinov2", 3, freeze_backbone=True, img_size=28, model_kwargs=TINY_DINOV2
    )
    plain.load_state_dict(net.state_dict())
    x = torch.randn(5, 3, 28, 28)
    with pytest.warns(UserWarning, match="feature cache is full"):
        torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    assert len(net._cache) == 3 and net.cache_hits == 3


def test_feature_cache_needs_a_frozen_backbone():
    with pytest.raises(ValueError, match="cache_features: .* needs freeze_backbone: true"):
        TimmNet("resnet18", 3, cache_features=True)


def test_vit_built_for_the_data_size_and_cnn_unaffected(tmp_path):
    """A pretrained ViT's position grid is resampled to the image size the data links in; a CNN ignores it."""
    from safetensors.torch import save_file

    source = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=56, **TINY_DINOV2)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    net = TimmNet(
        "vit_small_patch14_dinov2", 3, weights_file=str(weights), img_size=28, model_kwargs=TINY_DINOV2
    )
    assert net.model.pos_embed.shape == (1, 1 + 4, 32)
    torch.testing.assert_close(net.model.pos_embed[:, 0], source.pos_embed[:, 0])  # class position as saved
    torch.testing.assert_close(net.model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert net(torch.randn(2, 3, 28, 28)).shape == (2, 3)
    assert TimmNet("resnet18", 3, img_size=28)(torch.randn(2, 3, 28, 28)).shape == (2, 3)
    # a ViT that model_kwargs builds for another size than the data's is refused when built, not at a batch
    with pytest.raises(ConfigError, match=r"model_kwargs.img_size: 56, but the data's images are 28x28"):
        TimmNet("vit_small_patch14_dinov2", 3, img_size=28, model_kwargs={**TINY_DINOV2, "img_size": 56})
    TimmNet("vit_small_patch14_dinov2", 3, img_size=28, model_kwargs={**TINY_DINOV2, "img_size": 28})
    # a ViT that takes any size (dynamic_img_size) is not held to one
    TimmNet(
        "vit_small_patch14_dinov2",
        3,
        img_size=28,
        model_kwargs={**TINY_DINOV2, "img_size": 56, "dynamic_img_size": True},
    )
    # a command line's null reaches a net's option as the text 'None' (jsonargparse): said with the way out
    with pytest.raises(ConfigError, match=r"weights_file: 'None': for no weights file give null"):
        TimmNet("resnet18", 3, weights_file="None")
    # the command line's null for a net option is null, as in YAML (jsonargparse alone reads it as 'None')
    for null in (["--model.net.init_args.weights_file=null"], ["--model.net.init_args.weights_file", "null"]):
        args = ["--config", str(VISION / "efficientnet_lite0.yaml"), *null]
        parsed = ExperimentCLI(args=args, run=False, parse_only=True).config.model.init_args.net.init_args
        assert parsed.weights_file is None


@pytest.fixture
def tiny_dinov2(tmp_path):
    """A DINOv2-shaped ViT (timm's vit_small_patch14_dinov2, one block of width 32) saved as the weights file."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=28, **TINY_DINOV2)
    weights = tmp_path / "dinov2_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    return weights, source.state_dict()


def _dinov2_cli(tmp_path, config, weights, *more):
    import json

    args = [*image_args(tmp_path, config), f"--model.net.init_args.model_kwargs={json.dumps(TINY_DINOV2)}",
            "--data.img_size=28", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2", *more]  # fmt: skip
    if config != "dinov2_scratch.yaml":
        args.append(f"--model.net.init_args.weights_file={weights}")
    return ExperimentCLI(args=args, run=False)


def test_dinov2_linear_probe_config_trains_the_head_on_cached_features(tmp_path, tiny_dinov2):
    weights, saved = tiny_dinov2
    cli = _dinov2_cli(tmp_path, "dinov2_linear_probe.yaml", weights, "--trainer.limit_train_batches=null",
                      "--trainer.limit_val_batches=null")  # fmt: skip
    head_before = cli.model.net.model.head.weight.detach().clone()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    net = cli.model.net
    for key, value in saved.items():  # the backbone is the file's, untouched by training
        torch.testing.assert_close(net.model.state_dict()[key], value, rtol=0, atol=0)
    assert not torch.equal(net.model.head.weight, head_before)
    distinct = len(cli.datamodule.splits["train"]) + len(cli.datamodule.splits["val"])
    assert net.cache_misses == distinct  # every image's features computed once, over two epochs
    assert net.cache_hits >= distinct  # the second epoch, training and validation, from the cache
    # the training FLOPs follow the cache: counted again in the second epoch, where the head alone runs
    tally, batches = cli.model.flops_tally, cli.trainer.num_training_batches
    (start0, first), (start1, second) = tally.segments
    assert (start0, start1, tally.batches) == (0, batches, 2 * batches)
    assert second < first / 10 and tally.total() == batches * (first + second)


def test_dinov2_fine_tune_config_head_first_then_every_layer_with_layer_decay(tmp_path, tiny_dinov2):
    """LP-FT with layer-wise decay: epoch 0 trains the head only; at epoch 1 the backbone joins as timm's
    layer groups, each at the backbone's rate times its layer's scale, every parameter in exactly one group."""
    from lightning.pytorch.callbacks import Callback

    weights, saved = tiny_dinov2
    cli = _dinov2_cli(tmp_path, "dinov2_fine_tune.yaml", weights)
    seen = {}

    class Record(Callback):  # after BackboneFinetuning: its epoch-start changes are made
        def on_train_epoch_start(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            seen[f"lr{trainer.current_epoch}"] = {
                id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]
            }

        def on_train_epoch_end(self, trainer, pl_module):
            model = pl_module.net.model
            seen[trainer.current_epoch] = {
                k for k, v in saved.items() if not torch.equal(model.state_dict()[k], v)
            }

    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    model = cli.model.net.model
    assert seen[0] == set()  # the file's weights (the head is new) stayed during the first epoch
    assert {"blocks.0.attn.qkv.weight", "pos_embed", "cls_token"} <= seen[1]
    assert set(seen["lr0"]) == {id(p) for p in model.head.parameters()}
    lr = seen["lr1"]
    assert len(lr) == sum(1 for _ in model.parameters())  # every parameter, once
    from timm.optim import param_groups_layer_decay

    head = lr[id(model.head.weight)]
    scale = {id(p): g["lr_scale"] for g in param_groups_layer_decay(model, 0.0, model.no_weight_decay(),
                                                                    layer_decay=0.75) for p in g["params"]}  # fmt: skip
    backbone = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    # each at the backbone's rate (0.03 x the head's) times timm's scale for its layer: the embeddings lowest
    assert [lr[id(p)] for p in backbone] == pytest.approx([0.03 * head * scale[id(p)] for p in backbone])
    assert lr[id(model.pos_embed)] == pytest.approx(0.75 * lr[id(model.blocks[0].attn.qkv.weight)])


def test_dinov2_scratch_config_starts_from_random_weights(tmp_path, tiny_dinov2):
    weights, saved = tiny_dinov2
    cli = _dinov2_cli(tmp_path, "dinov2_scratch.yaml", weights)
    model = cli.model.net.model
    assert not torch.equal(model.blocks[0].attn.qkv.weight, saved["blocks.0.attn.qkv.weight"])
    assert tuple(cli.datamodule.data_config["mean"]) == (0.485, 0.456, 0.406)  # the pretrained rows' input
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


def test_layer_decay_inside_timmnet_groups_every_parameter_as_timm_groups_the_bare_model():
    """TimmNet holds the timm model as ``model.``: its layer groups must be timm's own for the bare model (a
    ViT's position embedding and patch embedding in the lowest group, not left over at the head's rate)."""
    from timm.optim import param_groups_layer_decay

    from lit_models.optim import parameter_groups

    net = TimmNet("vit_small_patch14_dinov2", 3, img_size=28, model_kwargs={**TINY_DINOV2, "depth": 3})
    ours = {id(p): g.get("lr_scale", 1.0) for g in parameter_groups(net, 0.5) for p in g["params"]}
    theirs = {id(p): g["lr_scale"] for g in param_groups_layer_decay(net.model, 0.0, net.model.no_weight_decay(),
                                                                     layer_decay=0.5) for p in g["params"]}  # fmt: skip
    assert ours == theirs
    assert ours[id(net.model.pos_embed)] == ours[id(net.model.patch_embed.proj.weight)] == 0.5**4


def test_resuming_after_the_unfreezing_epoch_trains_the_backbone(tmp_path, tiny_dinov2):
    """A run resumed past BackboneFinetuning's unfreezing epoch: setup() froze the backbone again and the
    restored optimizer does not unfreeze it (Lightning issue #21901); ours makes it trainable again, with its
    layer groups' rates as saved."""
    from lightning.pytorch.callbacks import Callback

    weights, _ = tiny_dinov2
    constant = "--model.lr_scheduler=null"  # a run extended past its first end trains at a rate above zero
    first = _dinov2_cli(tmp_path, "dinov2_fine_tune.yaml", weights, constant)
    first.trainer.fit(
        first.model, datamodule=first.datamodule
    )  # 2 epochs: the backbone unfroze in the second
    last = next(tmp_path.rglob("last.ckpt"))
    saved_rates = sorted(g["lr"] for g in first.trainer.optimizers[0].param_groups)
    resumed = _dinov2_cli(tmp_path, "dinov2_fine_tune.yaml", weights, constant, "--trainer.max_epochs=3")
    seen = {}

    class Record(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen["rates"] = sorted(g["lr"] for g in trainer.optimizers[0].param_groups)
            seen["before"] = pl_module.net.model.blocks[0].attn.qkv.weight.detach().clone()

        def on_train_epoch_end(self, trainer, pl_module):
            seen["trainable"] = pl_module.net.model.blocks[0].attn.qkv.weight.requires_grad
            seen["moved"] = not torch.equal(seen["before"], pl_module.net.model.blocks[0].attn.qkv.weight)

    resumed.trainer.callbacks.append(Record())
    resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path=str(last))
    assert resumed.trainer.current_epoch == 3
    assert seen["trainable"] and seen["moved"]
    assert len(seen["rates"]) == len(saved_rates)  # the same groups, restored


def test_export_without_config_rebuilds_the_run_from_its_own_config_yaml(tmp_path):
    """As align and attention do: the run's config.yaml beside its checkpoints folder."""
    args = [*image_args(tmp_path, "vit.yaml"), "--trainer.max_steps=1", "--trainer.limit_val_batches=1"]
    ExperimentCLI(args=["fit", *args])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    result = run_main("export", "--ckpt", str(ckpt), "--out", str(tmp_path / "w.safetensors"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_file(tmp_path / "w.safetensors")


@pytest.mark.parametrize("kind", ["timm", "resnet"])
def test_init_from_gives_a_net_of_another_class_count_a_fresh_classifier_under_its_own_name(tmp_path, kind):
    """Trial 25: a fine-tuned DINOv2 (TimmNet: classifier ``model.head``) could not start a 2-class run from its
    3-class checkpoint ("shapes differ: model.head.weight"), where the README says the head starts fresh; a
    ResNet's ``fc`` the same."""
    from lit_models import PredictionTask
    from lit_models.resnet import ResNet

    def net(classes: int) -> torch.nn.Module:
        if kind == "timm":
            return TimmNet("resnet10t", num_outputs=classes)
        return ResNet(in_channels=1, num_outputs=classes)

    torch.manual_seed(0)
    saved = PredictionTask(net(3), task="classification", num_outputs=3)
    ckpt = tmp_path / "three.ckpt"
    torch.save({"state_dict": saved.state_dict()}, ckpt)
    task = PredictionTask(net(2), task="classification", num_outputs=2)
    state, fresh_head, left_out = task.init_state(str(ckpt), None)
    head = "model.fc." if kind == "timm" else "fc."  # timm's resnet10t names its classifier fc
    assert fresh_head and left_out == [f"{head}weight", f"{head}bias"]
    assert len(state) == len(task.net.state_dict()) - 2
    assert all(torch.equal(v, saved.net.state_dict()[k]) for k, v in state.items())
    task.net.load_state_dict(state, strict=False)  # what _init_from does with a fresh head
