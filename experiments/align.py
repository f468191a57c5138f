"""Alignments you can look at: which source symbols a sequence-to-sequence model read for each symbol it wrote.

``python -m experiments align --config experiments/seq2seq/transformer.yaml --ckpt RUN.ckpt --text WORD``
rebuilds the run's model from its config, loads the checkpoint (its vocabularies must be the data's), decodes the
word greedily and draws the attention of every decoder layer and head (the Transformer's cross-attention,
Bahdanau's additive attention) over the source: one row per written symbol, one column per source symbol. The
:class:`AlignmentMaps` callback draws the same maps for fixed words during validation (PNG beside the run, W&B
images).
"""

from __future__ import annotations

import json
import warnings

import torch
from lightning.pytorch.callbacks import Callback

from archbench.errors import DataError
from datamodules.files import write_atomic
from datamodules.seq2seq import BOS, EOS, SYMBOL_TOKENIZERS, Seq2SeqDataModule
from experiments.attention import attention_figure, figure_bytes, keep_images
from experiments.from_checkpoint import map_command
from lit_models.seq2seq import greedy_decode


def alignment(net: torch.nn.Module, datamodule, text: str, max_length: int = 48, option: str = "--text"):
    """One source's alignment maps (per layer: heads x written x source), the written symbols (and ``<eos>``)
    and the source symbols. A source longer than the net's positions stops naming ``option``, where it came from."""
    if not hasattr(net, "alignments"):
        raise DataError(f"model.net: {type(net).__name__} has no attention over the source to show")
    batch = datamodule.encode_sources([text])
    limit, length = getattr(net, "max_length", None), int(batch["lengths"][0])  # the Transformer's positions
    if limit is not None and length > limit:
        raise DataError(f"{option}: a source of {length} symbols is longer than the net's max_length={limit} "
                        "(model.net.init_args.max_length); give a shorter one")  # fmt: skip
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


def draw(
    net, datamodule, text: str, max_length: int = 48, option: str = "--text", fmt: str = "png"
) -> tuple[bytes, list[str]]:
    maps, outputs, sources = alignment(net, datamodule, text, max_length, option)
    title = f"{text} -> {' '.join(o for o in outputs if o != '<eos>')}"
    return figure_bytes(attention_figure(maps, sources, title=title[:100], queries=outputs), fmt), outputs


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
            images = [draw(pl_module.net, trainer.datamodule, text, length, "--trainer.callbacks.texts")[0]
                      for text in self.texts]  # fmt: skip
        for warning in said:  # unseen symbols: said at the first drawing only, with what to do about it
            if "never seen in training" not in str(warning.message):
                warnings.warn(warning.message, stacklevel=1)
            elif not self._said:
                warnings.warn(f"{warning.message} (AlignmentMaps: give words of your data after the config: "
                              "--trainer.callbacks.texts='[word, another]')", stacklevel=1)  # fmt: skip
        self._said = True
        keep_images(trainer, log_dir, "alignment", images, self.texts)


def _saved_vocabularies(checkpoint: dict) -> dict[str, str]:
    """The checkpoint's vocabularies as saved-vocabulary files for ``data.<side>_tokenizer``: the model reads
    the ids it was trained on, and the data files need not be on disk."""
    state = checkpoint.get(Seq2SeqDataModule.__qualname__) or {}
    kinds = checkpoint.get("datamodule_hyper_parameters") or {}
    files = {}
    for side in ("source", "target"):
        saved, kind = state.get(f"{side}_symbols"), kinds.get(f"{side}_tokenizer")
        if isinstance(saved, list) and kind in SYMBOL_TOKENIZERS:
            files[f"data.{side}_tokenizer"] = json.dumps({"kind": kind, "symbols": saved})
        elif isinstance(saved, dict) and isinstance(saved.get("tokenizer"), str):
            files[f"data.{side}_tokenizer"] = json.dumps(saved)
        # else a checkpoint that does not say: the data's own vocabulary, checked against it
    return files


def main(argv: list[str]) -> None:
    cli, args = map_command(
        "align", "Draw a sequence-to-sequence model's attention over a source for each symbol it writes (PNG, SVG, PDF, ...).",
        "the source to decode and look at (a word for G2P)", argv, Seq2SeqDataModule,
        "sequence pairs (use a seq2seq config)", _saved_vocabularies, "alignment",
    )  # fmt: skip
    module, datamodule = cli.model, cli.datamodule
    picture, outputs = draw(
        module.net, datamodule, args.text, module.hparams.max_decode_length, fmt=args.format
    )
    write_atomic(args.out, picture)
    print(f"align: {args.text} -> {' '.join(o for o in outputs if o != '<eos>')} ({args.out})")
