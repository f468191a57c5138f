"""LightningCLI for sequence tasks: sizes the data knows are linked into the model, never typed twice.

The data is any LightningDataModule given by ``class_path`` (DNA by default, text with
``datamodules.text.TextClassificationDataModule``); it must offer the properties in ``DATA_LINKS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from experiments.errors import ConfigError
from experiments.resume import AtomicCheckpointIO, ResumeState, resume_last
from lit_models.sequence_task import SequenceTask

DEFAULTS = Path(__file__).parent / "dna" / "base.yaml"
# Sizes read off the instantiated datamodule and passed to the model's constructor.
DATA_LINKS = {
    "data.in_channels": "model.net.init_args.in_channels",
    "data.vocab_size": "model.net.init_args.vocab_size",
    "data.seq_len": "model.net.init_args.seq_len",
    "data.num_outputs": ["model.net.init_args.num_outputs", "model.num_outputs"],
    "data.task": "model.task",
    "data.target_mean": "model.target_mean",
    "data.target_std": "model.target_std",
}

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


class ExperimentCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        defaults = {"default_env": False, "default_config_files": [str(DEFAULTS)]}
        # With subcommands (run=True) parser options go to each subcommand's parser; without them
        # (run=False, as compare builds its runs) to the single parser. Both must load the defaults.
        kwargs.setdefault("parser_kwargs", {c: defaults for c in self.subcommands()} if run else defaults)
        # Any LightningDataModule by class_path; base.yaml makes DNADataModule the default.
        super().__init__(
            SequenceTask, L.LightningDataModule, subclass_mode_data=True, args=args, run=run, **kwargs
        )

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        if str(config.get("precision")) not in PRECISIONS:  # e.g. 64: the data is float32
            raise ConfigError(
                f"trainer.precision: {config.get('precision')!r} is not one of {', '.join(PRECISIONS)}"
            )
        callbacks_ = list(config.get("callbacks") or [])
        if not config.get("logger"):  # a run without a logger has no learning rate to monitor
            callbacks_ = [c for c in callbacks_ if not isinstance(c, LearningRateMonitor)]
        if not any(isinstance(c, ResumeState) for c in callbacks_):
            callbacks_.append(ResumeState())  # RNG states and the W&B run id go into every checkpoint
        config["callbacks"] = callbacks_
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]  # a kill never leaves half a checkpoint
        try:
            return super()._instantiate_trainer(config, callbacks)
        except (MisconfigurationException, ValueError, TypeError, ModuleNotFoundError) as err:
            # An impossible request (no such accelerator, too many devices, a precision the device lacks).
            raise ConfigError(f"trainer: {str(err).splitlines()[0]} ({available_hardware()})") from None

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit" and self.config.fit.get("ckpt_path") == "last":
            # The newest run of this model in its own folder and W&B run; none yet: a fresh run.
            dumped = yaml.safe_load(self._parser("fit").dump(self.config.fit, skip_none=False))
            self.config.fit.ckpt_path = resume_last(self.config.fit, dumped.get("model"))
            if self.config.fit.ckpt_path:
                print(f"resuming from {self.config.fit.ckpt_path}")

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if "weights_only" in {a.dest for a in parser._actions}:
            parser.set_defaults(weights_only=True)  # checkpoints are tensors and plain values, never pickles
        return parser

    def add_arguments_to_parser(self, parser) -> None:
        for source, targets in DATA_LINKS.items():
            for target in [targets] if isinstance(targets, str) else targets:
                parser.link_arguments(source, target, apply_on="instantiate")
        # Only image data has a size; a net without the argument (every sequence net) ignores the link.
        parser.link_arguments("data", "model.net.init_args.img_size", _img_size, apply_on="instantiate")


def available_hardware() -> str:
    """What this machine offers, for error messages."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    gpu = f"{gpus} CUDA GPU(s): {', '.join(names)}" if gpus else "no CUDA GPU"
    return f"this machine: accelerator cpu ({os.cpu_count()} cores), {gpu}; precision {', '.join(PRECISIONS)}"


def _img_size(data) -> int | None:
    return getattr(data, "img_size", None)
