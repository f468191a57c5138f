"""LightningCLI for sequence tasks: sizes the data knows are linked into the model, never typed twice.

The data is any LightningDataModule given by ``class_path`` (DNA by default, text with
``datamodules.text.TextClassificationDataModule``); it must offer the properties in ``DATA_LINKS``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

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

    def add_arguments_to_parser(self, parser) -> None:
        for source, targets in DATA_LINKS.items():
            for target in [targets] if isinstance(targets, str) else targets:
                parser.link_arguments(source, target, apply_on="instantiate")
        # Only image data has a size; a net without the argument (every sequence net) ignores the link.
        parser.link_arguments("data", "model.net.init_args.img_size", _img_size, apply_on="instantiate")


def _img_size(data) -> int | None:
    return getattr(data, "img_size", None)
