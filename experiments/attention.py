"""Attention you can look at: every layer's and head's weights over the tokens of a text, as one picture.

``python -m experiments attention --ckpt RUN.ckpt --text "..."`` rebuilds the run's model from its configs (those
given with ``--config``, else the run's own ``config.yaml``), loads the checkpoint's weights and the tokenizer it
was trained with, and draws a grid: one row per layer, one column per head, queries down, keys across.
The :class:`AttentionMaps` callback logs the same figure to W&B (and saves it beside the run) during
validation.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from archbench.errors import ConfigError, DataError
from datamodules.files import write_atomic
from experiments.from_checkpoint import map_command


def attention_figure(
    maps: list[torch.Tensor], tokens: list[str], title: str = "", queries: list[str] | None = None
):
    """maps: per layer (heads, Q, T) for one text; tokens: its T tokens (across); queries: the Q rows' tokens
    (down), the same tokens when empty (self-attention) -> a matplotlib figure."""
    queries = tokens if queries is None else queries
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads = len(maps), maps[0].shape[0]
    width, height = max(2.0, 0.22 * len(tokens) + 1.0), max(2.0, 0.22 * len(queries) + 1.0)
    fig, axes = plt.subplots(layers, heads, figsize=(width * heads, height * layers), squeeze=False)
    for i, layer in enumerate(maps):
        for h in range(heads):
            ax = axes[i][h]
            ax.imshow(layer[h].float().cpu().numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_title(f"layer {i + 1} head {h + 1}", fontsize=8)
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
            ax.set_yticks(range(len(queries)), queries, fontsize=6)
    if title:  # wrapped to the figure's width (trial 28: a long word's outputs were cut at both sides)
        import textwrap

        fig.suptitle(textwrap.fill(title, max(20, int(fig.get_figwidth() * 12))), fontsize=10)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure as a file's bytes in ``fmt`` (any of ``image_format``'s), and closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight")  # nothing drawn past the edges is cut
    plt.close(fig)
    return buffer.getvalue()


def text_attention(net: torch.nn.Module, datamodule, text: str) -> tuple[list[torch.Tensor], list[str]]:
    """One text's attention maps (per layer: heads x T x T) and its tokens, from a net with ``attention_maps``."""
    if not hasattr(net, "attention_maps"):
        raise DataError(f"model.net: {type(net).__name__} has no attention to show (use a Transformer)")
    batch = datamodule.encode([text])
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        maps = net.attention_maps(batch["x"].to(device), batch["lengths"].to(device))
    finally:
        net.train(was_training)
    ids = batch["x"][0].tolist()
    tokens = [datamodule.tokenizer.id_to_token(i) for i in ids]
    n = maps[0].shape[-1]
    if n != len(tokens):  # a class token in front (cls pooling): show it by name
        tokens = ["<cls>", *tokens][:n] if n == len(tokens) + 1 else [str(i) for i in range(n)]
    return [m[0] for m in maps], tokens


class AttentionMaps(Callback):
    """During validation, draw the attention of the model over fixed texts: logged to W&B as images and saved
    as ``attention/epoch{E}-step{S}.png`` in the run's log folder.
    """

    def __init__(self, texts: list[str], every_n_epochs: int = 1):
        """
        Args:
            texts: Texts to draw (a few short ones: each gives layers x heads maps).
            every_n_epochs: Draw at the end of validation every this many epochs.
        """
        if not texts:
            raise ValueError("AttentionMaps needs at least one text")
        self.texts, self.every_n_epochs = list(texts), every_n_epochs

    def check_before_run(self, pl_module, datamodule) -> None:
        """Called by the CLI before the run starts (``experiments.cli``): a model or data it cannot draw is
        refused then, not at the first validation after an epoch has trained."""
        net = pl_module.net
        if not hasattr(net, "attention_maps") or not hasattr(datamodule, "encode"):
            raise ConfigError(
                f"trainer.callbacks: AttentionMaps draws a text model's attention over fixed texts; "
                f"{type(net).__name__} on {type(datamodule).__name__} has none to draw that way: leave it out"
            )

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        # trainer.log_dir is a broadcast under DDP: every rank asks, before rank 0 goes on alone. Without a
        # logger it would be the working directory: then the maps go to W&B (if any) only.
        log_dir = trainer.log_dir if trainer.loggers else None
        if not trainer.is_global_zero:
            return
        images = []
        for text in self.texts:
            maps, tokens = text_attention(pl_module.net, trainer.datamodule, text)
            images.append(figure_bytes(attention_figure(maps, tokens, title=text[:80])))
        keep_images(trainer, log_dir, "attention", images, self.texts)


def keep_images(trainer, log_dir: str | None, kind: str, images: list[bytes], captions: list[str]) -> None:
    """Validation figures (PNG bytes): ``{kind}/epoch{E}-step{S}-text{k}.png`` in the run's log folder (when it
    has one) and ``val/{kind}`` images in W&B (when a W&B logger is there)."""
    for k, png in enumerate(images):
        if log_dir:
            write_atomic(
                Path(log_dir) / f"{kind}/epoch{trainer.current_epoch}-step{trainer.global_step}-text{k}.png",
                png,
            )
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            from PIL import Image

            pictures = [Image.open(io.BytesIO(png)).convert("RGB") for png in images]
            # one size for all (W&B shows a set of images of several sizes wrongly, and says so on the root
            # logger at every validation): each on a white canvas of the largest width and height
            size = (max(p.width for p in pictures), max(p.height for p in pictures))
            canvases = [Image.new("RGB", size, "white") for _ in pictures]
            for canvas, picture in zip(canvases, pictures, strict=True):
                canvas.paste(picture, (0, 0))
            logger.log_image(f"val/{kind}", canvases, step=trainer.global_step, caption=captions)


def _text_data() -> type:
    from datamodules.text import TextClassificationDataModule  # here: the callbacks need no text stack

    return TextClassificationDataModule


def _saved_tokenizer(checkpoint: dict) -> dict[str, str]:
    """The checkpoint's tokenizer as a run's ``tokenizer.json`` for ``data.tokenizer``: the model reads the ids it
    was trained on, whatever tokenizer the configs name."""
    state = checkpoint.get(_text_data().__qualname__) or {}
    saved = state.get("tokenizer")
    return {"data.tokenizer": saved} if isinstance(saved, str) else {}


def main(argv: list[str]) -> None:
    cli, args = map_command(
        "attention", "Draw every layer's and head's attention over the tokens of a text, as a picture (PNG, SVG, PDF, ...).",
        "the text to look at", argv, _text_data(), "texts to classify (use a text config)", _saved_tokenizer,
        "attention",
    )  # fmt: skip
    if cli.datamodule.tokenizer.encode(args.text).overflowing:  # cut to the length the model was trained at
        print(f"warning: --text: longer than data.max_length {cli.datamodule.seq_len} tokens, the model's: the map "
              "shows its start, as the model reads it", file=sys.stderr)  # fmt: skip
    maps, tokens = text_attention(cli.model.net, cli.datamodule, args.text)
    write_atomic(args.out, figure_bytes(attention_figure(maps, tokens, title=args.text[:80]), args.format))
    print(f"attention: {len(maps)} layers x {maps[0].shape[0]} heads over {len(tokens)} tokens -> {args.out}")
