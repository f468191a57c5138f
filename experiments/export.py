"""``python -m experiments export --config ... --ckpt RUN.ckpt --out weights.safetensors``: a trained net's
weights as a safetensors file in timm's names, so that ``TimmNet(name=..., weights_file=...)`` (timm's
``pretrained_cfg_overlay``) fine-tunes from it exactly as from any timm weights file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from archbench.checkpoint_files import check_checkpoint, configs_for
from archbench.errors import ConfigError, DataError
from datamodules.files import check_writable, write_atomic
from experiments.configs import CommandParser, import_class
from experiments.from_checkpoint import cli_from_configs
from lit_models.checks import state_dict_mismatch


def main(argv: list[str]) -> None:
    parser = CommandParser(prog="python -m experiments export", description=__doc__)
    parser.add_argument(
        "--config",
        action="append",
        help="the run's config file(s), in order; empty: the --ckpt run's config.yaml",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of the run")
    parser.add_argument("--out", required=True, help="safetensors file to write")
    args, overrides = parser.parse_known_args(argv)
    check_writable(args.out, "--out")  # before any work
    checkpoint = check_checkpoint(args.ckpt, "--ckpt")

    from safetensors.torch import save

    from experiments.cli import ExperimentCLI

    configs = configs_for(args.ckpt, args.config)  # as align and attention: the run's own config.yaml
    # a net with no timm counterpart is said before the data is read (its files need not be on disk for that)
    net = cli_from_configs(configs, overrides, parse_only=True).config.model.init_args.get("net")
    net_class = import_class(str(net.class_path)) if net is not None and net.get("class_path") else None
    if net_class is not None and not hasattr(net_class, "timm_args"):
        raise DataError(_no_timm(net_class.__name__))
    cli_args = [a for c in configs for a in ("--config", c)] + overrides + ["--trainer.logger=false"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = ExperimentCLI(args=cli_args, run=False)
    module = cli.model
    target = module.net.timm_args() if hasattr(module.net, "timm_args") else None
    if target is None:
        raise DataError(_no_timm(type(module.net).__name__))
    problem = state_dict_mismatch(module, checkpoint["state_dict"])
    if problem:
        raise ConfigError(f"--ckpt {args.ckpt} does not fit the model that --config builds ({problem})")
    module.load_state_dict(checkpoint["state_dict"])
    name, kwargs = target
    state = {k: v.contiguous() for k, v in module.net.timm_state_dict().items()}
    metadata = {
        **data_config_metadata(cli.datamodule),
        "timm.name": name,
        "timm.model_kwargs": json.dumps(kwargs),
    }
    replaced = Path(args.out).is_file()  # as any export tool does; said, not done unsaid (trial 32)
    write_atomic(args.out, save(state, metadata=metadata))
    print(
        f"export: {len(state)} tensors (timm names) -> {args.out}"
        + (" (the file there replaced)" if replaced else "")
    )
    print(
        "fine-tune from it: --model.net lit_models.image_nets.TimmNet --model.net.init_args.name "
        f"{name} --model.net.init_args.model_kwargs '{json.dumps(kwargs)}' --model.net.init_args.weights_file "
        f"{args.out} --model.net.init_args.reset_head true (reset_head for other classes)"
    )


def _no_timm(net: str) -> str:
    return f"model.net: this {net} has no timm counterpart" + (
        " (timm's resnet18/34 have a 7x7 stem with pooling and 64 channels in the first stage: "
        "small_input: false, width: 64, as experiments/vision/transfer/resnet.yaml)"
        if net == "ResNet"
        else " (ResNet, VisionTransformer and TimmNet have)"
    )


def data_config_metadata(datamodule) -> dict[str, str]:
    """The input the weights were trained on (size, mean/std, interpolation, crop) as safetensors metadata:
    ``TimmNet`` reads it back into timm's ``pretrained_cfg``, so fine-tuning normalises as pre-training did."""
    config = getattr(datamodule, "data_config", None)
    if config is None:
        return {}
    keys = ("input_size", "mean", "std", "interpolation", "crop_pct")
    metadata = {f"pretrained_cfg.{k}": json.dumps(config[k]) for k in keys if k in config}
    metadata["pretrained_cfg.num_classes"] = json.dumps(datamodule.num_outputs)  # timm keeps a head that fits
    return metadata
