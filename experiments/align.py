"""Alignments you can look at: which source symbols a sequence-to-sequence model read for each symbol it wrote.

``python -m experiments align --config experiments/seq2seq/transformer.yaml --ckpt RUN.ckpt --text WORD``
rebuilds the run's model from its config, loads the checkpoint (its vocabularies must be the data's), decodes the
word greedily and draws the attention of every decoder layer and head (the Transformer's cross-attention,
Bahdanau's additive attention) over the source: one row per written symbol, one column per source symbol. The
:class:`AlignmentMaps` callback draws the same maps for fixed words during validation (PNG beside the run, W&B
images).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from archbench.checkpoint_files import (
    check_checkpoint,
    checkpoint_task,
    configs_for,
    is_subclass,
    with_run_config_hint,
)
from archbench.errors import ConfigError, DataError
from datamodules.files import write_atomic
from datamodules.seq2seq import BOS, EOS, SYMBOL_TOKENIZERS, Seq2SeqDataModule
from experiments.attention import attention_figure, cli_from_configs, figure_png, keep_images
from lit_models.seq2seq import greedy_decode


def alignment(net: torch.nn.Module, datamodule, text: str, max_length: int = 48):
    """One source's alignment maps (per layer: heads x written x source), the written symbols (and ``<eos>``)
    and the source symbols."""
    if not hasattr(net, "alignments"):
        raise DataError(f"model.net: {type(net).__name__} has no attention over the source to show")
    batch = datamodule.encode_sources([text])
    device = next(net.parameters()).device
    x, lengths = batch["x"].to(device), batch["lengths"].to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            written = greedy_decode(net, x, lengths, BOS, EOS, max_length)[0]
            net.set_record(True)
            net(x, lengths, torch.tensor([[BOS, *written]], device=device))
            maps = [m[0].cpu() for m in net.alignments()]
    finally:
        net.set_record(False)
        net.train(was_training)
    outputs = datamodule.target_vocab.decode(written) + (["<eos>"] if len(written) < max_length else [])
    return [m[:, : len(outputs)] for m in maps], outputs, batch["symbols"][0]


def draw(net, datamodule, text: str, max_length: int = 48) -> tuple[bytes, list[str]]:
    maps, outputs, sources = alignment(net, datamodule, text, max_length)
    title = f"{text} -> {' '.join(o for o in outputs if o != '<eos>')}"
    return figure_png(attention_figure(maps, sources, title=title[:100], queries=outputs)), outputs


class AlignmentMaps(Callback):
    """During validation, draw the model's alignment for fixed sources: ``alignment/epoch{E}-step{S}-text{k}.png``
    in the run's log folder and ``val/alignment`` images in W&B."""

    def __init__(self, texts: list[str], every_n_epochs: int = 1):
        """
        Args:
            texts: Sources to draw (a few short words).
            every_n_epochs: Draw at the end of validation every this many epochs.
        """
        if not texts:
            raise ValueError("AlignmentMaps needs at least one text")
        self.texts, self.every_n_epochs = list(texts), every_n_epochs
        self._said = False  # unseen symbols of the texts: said once, at the first drawing

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        log_dir = trainer.log_dir if trainer.loggers else None  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        length = pl_module.hparams.max_decode_length
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            images = [draw(pl_module.net, trainer.datamodule, text, length)[0] for text in self.texts]
        for warning in said:  # unseen symbols: said at the first drawing only, with what to do about it
            if "never seen in training" not in str(warning.message):
                warnings.warn(warning.message, stacklevel=1)
            elif not self._said:
                warnings.warn(f"{warning.message} (AlignmentMaps: give words of your data after the config: "
                              "--trainer.callbacks.texts='[word, another]')", stacklevel=1)  # fmt: skip
        self._said = True
        keep_images(trainer, log_dir, "alignment", images, self.texts)


def _saved_vocabularies(checkpoint: dict | None, folder: Path) -> list[str]:
    """``--data.<side>_tokenizer`` options that give the data module a checkpoint's vocabularies, written into
    ``folder``: the model reads the ids it was trained on, and the data files need not be on disk."""
    state = (checkpoint or {}).get("Seq2SeqDataModule") or {}
    kinds = (checkpoint or {}).get("datamodule_hyper_parameters") or {}
    options = []
    for side in ("source", "target"):
        saved, kind = state.get(f"{side}_symbols"), kinds.get(f"{side}_tokenizer")
        if isinstance(saved, list) and kind in SYMBOL_TOKENIZERS:
            content = {"kind": kind, "symbols": saved}
        elif isinstance(saved, dict) and isinstance(saved.get("tokenizer"), str):
            content = saved
        else:  # a checkpoint that does not say: the data's own vocabulary, checked against it below
            continue
        path = folder / f"{side}.json"
        path.write_text(json.dumps(content), encoding="utf-8")
        options.append(f"--data.{side}_tokenizer={path}")
    return options


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments align",
        description="Draw a sequence-to-sequence model's attention over a source for each symbol it writes (PNG).",
    )
    parser.add_argument(
        "--config",
        action="append",
        help="the run's config file(s), in order; empty: the --ckpt run's config.yaml",
    )
    parser.add_argument("--ckpt", help="checkpoint to load; empty: untrained weights")
    parser.add_argument("--text", required=True, help="the source to decode and look at (a word for G2P)")
    parser.add_argument("--out", default="alignment.png", help="PNG to write (default: alignment.png)")
    args, overrides = parser.parse_known_args(argv)

    if not args.config and not args.ckpt:
        raise ConfigError("align: give --config (the model to draw) or --ckpt (a run's checkpoint)")
    configs = configs_for(args.ckpt, args.config) if args.ckpt else args.config
    checkpoint = check_checkpoint(args.ckpt, "--ckpt") if args.ckpt else None
    data = cli_from_configs(configs, overrides, parse_only=True).config.data.class_path
    if not is_subclass(data, Seq2SeqDataModule):
        raise DataError(f"data: {data} does not hold sequence pairs (use a seq2seq config)")
    with tempfile.TemporaryDirectory() as folder:  # the checkpoint's vocabularies: no data file needed
        cli = cli_from_configs(configs, overrides + _saved_vocabularies(checkpoint, Path(folder)))
    module, datamodule = cli.model, cli.datamodule
    if args.ckpt:
        task = checkpoint_task(checkpoint)
        if task and task != type(module).__name__:
            raise ConfigError(f"--ckpt {args.ckpt}: a checkpoint of {task}, not of {type(module).__name__}")
        state = checkpoint.get(type(datamodule).__qualname__)
        if state:
            datamodule.load_state_dict(state)  # the vocabularies it was trained with, or an error
        try:
            module.refuse_mismatch(checkpoint["state_dict"], f"--ckpt {args.ckpt}")  # another net: one line
        except ConfigError as err:
            raise with_run_config_hint(err, args.ckpt, configs) from None
        module.load_state_dict(checkpoint["state_dict"])
    else:
        print("align: no --ckpt, so these are the alignments of untrained weights")
    png, outputs = draw(module.net, datamodule, args.text, module.hparams.max_decode_length)
    write_atomic(args.out, png)
    print(f"align: {args.text} -> {' '.join(o for o in outputs if o != '<eos>')} ({args.out})")
