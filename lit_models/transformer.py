"""Transformer encoder for sequences, attention through ``F.scaled_dot_product_attention``.

Parameter layout follows ``torch.nn.TransformerEncoderLayer`` (fused qkv projection, out projection, two
feed-forward linears, two LayerNorms), so weights copy across one-to-one and parameter counts agree.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lit_models.act import AdaptiveDepth, UniversalOptions, universal_options
from lit_models.blocks import (
    Activation,
    EncoderBlock,
    Kernel,
    Norm,
    Pattern,
    Positions,
    Rotary,
    make_norm,
    position_table,
    sparse_window,
)
from lit_models.embedding import input_layer
from lit_models.moe import MoEOptions, moe_options
from lit_models.pooling import full_lengths, masked_mean, padding_mask
from lit_models.stem import ConvStem


class TransformerNet(nn.Module):
    """Input projection, positions, a stack of encoder blocks, pooling and a linear head."""

    def __init__(
        self,
        in_channels: int | None,
        num_outputs: int,
        seq_len: int,
        vocab_size: int = 0,
        embedding_scale: bool = False,
        d_model: int = 64,
        nhead: int = 4,
        head_dim: int | None = None,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation: Activation = "gelu",
        norm_first: bool = True,
        norm: Norm = "layernorm",
        positions: Positions = "sinusoidal",
        attention: Pattern = "full",
        window: int | None = None,
        attention_kernel: Kernel = "sdpa",
        moe: MoEOptions | None = None,
        universal: UniversalOptions | None = None,
        pooling: Literal["mean", "cls", "flatten"] = "mean",
        input_projection: bool = True,
        patch_length: int = 1,
        patch_kernel_length: int | None = None,
        stem_channels: int = 0,
        stem_kernel_size: int = 15,
        stem_pool_size: int = 1,
    ):
        """
        Args:
            in_channels: Features per position; linked from the data.
            num_outputs: Outputs per sequence; linked from the data.
            seq_len: Longest sequence; linked from the data (sizes learned positions and ``flatten``).
            vocab_size: Above 0, inputs are token ids (B, L), embedded to ``d_model`` (then no input
                projection, patches or stem); linked from the data.
            embedding_scale: Multiply token embeddings by sqrt(d_model), as the original Transformer does.
            d_model: Width of the residual stream.
            nhead: Attention heads.
            head_dim: Width of each head. Empty: ``d_model // nhead`` (as torch splits ``d_model``);
                ``d_model`` gives every head the full width, as the course's text Transformer did.
            num_layers: Encoder blocks.
            dim_feedforward: Hidden width of each block's MLP.
            dropout: Dropout on the residual branches (attention output and MLP).
            attention_dropout: Dropout on attention weights. torch's TransformerEncoderLayer uses
                ``dropout`` here too; on CPU any non-zero value leaves SDPA's fast kernel (about 5x slower).
            activation: MLP non-linearity: ``relu``, ``gelu``, ``gelu_tanh`` or ``swiglu`` (a gated MLP).
            norm_first: Pre-LN blocks (and a final norm); False gives the original post-LN blocks.
            norm: ``layernorm`` or ``rmsnorm``.
            positions: ``sinusoidal``, ``learned`` (one vector per position), ``rotary`` (in every attention),
                ``binary`` (dimension k: bit k of the position) or ``none``.
            attention: ``full``, or a sparse pattern through a mask: ``local`` (keys within ``window``),
                ``strided`` (the window and every ``window``-th position) or ``block`` (blocks of ``window``
                positions and each block's last position); see ``lit_models.blocks.pattern_mask``.
            window: The sparse pattern's width, in tokens (empty: 16); full attention has none (one given to it
                is ignored, with a warning).
            attention_kernel: ``sdpa`` (a bool mask through scaled_dot_product_attention), or ``flex``: a
                sparse pattern as a FlexAttention block mask on CUDA, which skips the masked-out blocks
                (2-10x faster from 4,096 tokens on an H100, slower at 1,024: README); on other devices SDPA
                with the same mask. Needs ``attention_dropout`` 0.
            moe: A Mixture of Experts in place of each block's MLP, e.g. ``{experts: 8, top_k: 2}``
                (``lit_models.moe.MoEOptions``).
            universal: A Universal Transformer: one block applied ``num_layers`` times, with adaptive
                computation time by default, e.g. ``{act: true, ponder_cost: 0.01}``
                (``lit_models.act.UniversalOptions``).
            pooling: ``mean`` over real positions, a ``cls`` token, or ``flatten`` every position into the
                head (fixed length only, as in the course's DNA notebook).
            input_projection: Project inputs to ``d_model``; False feeds them as they are (needs
                ``in_channels == d_model``, ``patch_length == 1`` and no stem).
            patch_length: Positions per token. Above 1, a strided convolution embeds each stretch of
                ``patch_length`` positions (a 1-D patch, as ViT does for images): L positions become
                ceil(L / patch_length) tokens, and attention gets cheaper by patch_length squared.
            patch_kernel_length: Width of the patch convolution; longer than ``patch_length`` gives overlapping
                patches, so a motif that straddles two patches is still seen whole by one. Default:
                ``patch_length``.
            stem_channels: Above 0, a convolutional stem (see ``ConvStem``) detects local patterns before
                the embedding, and the tokens are its ``stem_pool_size``-times fewer outputs; 0: none.
            stem_kernel_size: Width of the stem convolution (about a motif's length for DNA).
            stem_pool_size: Max-pooling after the stem.
        """
        super().__init__()
        self.tokens, in_channels = input_layer(vocab_size, d_model, embedding_scale, in_channels)
        if vocab_size > 0:
            if patch_length != 1 or stem_channels:
                raise ValueError(
                    "token inputs (vocab_size > 0) take no patch_length or stem: embed, then attend"
                )
            input_projection = False
        if not input_projection and (in_channels != d_model or patch_length != 1 or stem_channels):
            raise ValueError(
                "input_projection=False needs in_channels == d_model, patch_length == 1 and no stem, got "
                f"in_channels={in_channels}, d_model={d_model}, patch_length={patch_length}, "
                f"stem_channels={stem_channels}"
            )
        kernel = patch_kernel_length or patch_length
        if kernel < patch_length or (kernel - patch_length) % 2:
            raise ValueError(
                f"patch_kernel_length={kernel} must be >= patch_length={patch_length}, differing by an even number"
            )
        self.seq_len, self.pooling, self.patch_length = seq_len, pooling, patch_length
        self.stem = (
            ConvStem(in_channels, stem_channels, stem_kernel_size, stem_pool_size) if stem_channels else None
        )
        stem_len = -(-seq_len // stem_pool_size) if stem_channels else seq_len
        self.n_tokens = -(-stem_len // patch_length)
        in_channels = stem_channels or in_channels
        if patch_length > 1:
            self.embed = nn.Conv1d(
                in_channels, d_model, kernel, stride=patch_length, padding=(kernel - patch_length) // 2
            )
        else:
            self.embed = nn.Linear(in_channels, d_model) if input_projection else nn.Identity()
        n_positions = self.n_tokens + (pooling == "cls")
        if positions == "learned":
            self.pos = nn.Parameter(torch.zeros(n_positions, d_model))
            nn.init.trunc_normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", position_table(positions, n_positions, d_model), persistent=False)
        self.rotary = Rotary(head_dim or d_model // nhead) if positions == "rotary" else None
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        universal = universal_options(universal)
        window = sparse_window(attention, window, 16, old_default=16)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                d_model, nhead, dim_feedforward, dropout, activation, norm_first, attention_dropout, head_dim,
                norm=norm, pattern=attention, window=window, moe=moe_options(moe), kernel=attention_kernel,
            )
            for _ in range(1 if universal else num_layers)
        )  # fmt: skip
        self.depth = AdaptiveDepth(d_model, num_layers, universal) if universal else None
        self.norm = make_norm(norm, d_model, 1e-5) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model * (self.n_tokens if pooling == "flatten" else 1), num_outputs)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each block's attention weights, (B, nhead, T, T) over the tokens the blocks see (with ``cls``
        pooling, the class token first; with a stem or patches, one token per pooled window or patch).
        """
        for block in self.blocks:
            block.attn.record = True
        try:
            self(x, lengths)
            return [block.attn.weights for block in self.blocks]
        finally:
            for block in self.blocks:
                block.attn.record, block.attn.weights = False, None

    def _states(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The final norm's output for every token the blocks see (the class token first) and their mask."""
        lengths = full_lengths(x, lengths)
        if self.tokens is not None:
            x = self.tokens(x, lengths)
        B, L, _ = x.shape
        if L > self.seq_len:
            raise ValueError(f"sequence length {L} exceeds seq_len={self.seq_len} this model was built for")
        if self.stem is not None:
            x, lengths = self.stem(x, lengths)
        if self.patch_length > 1:
            P = self.patch_length
            h = F.pad(x.transpose(1, 2), (0, -x.shape[1] % P))  # whole patches; zeros like padding
            h = self.embed(h).transpose(1, 2)  # (B, ceil(L / P), D)
            lengths = torch.div(lengths + P - 1, P, rounding_mode="floor")
        else:
            h = self.embed(x)
        mask = padding_mask(lengths, h.shape[1])
        if self.cls is not None:
            h = torch.cat([self.cls.expand(B, -1, -1), h], dim=1)
            mask = torch.cat([mask.new_ones(B, 1), mask], dim=1)
        if self.pos is not None:
            h = h + self.pos[: h.shape[1]]
        full = bool(mask.all())
        if self.depth is not None:
            h = self.depth(
                h, lambda h, t: self.blocks[0](h, None if full else mask, rotary=self.rotary), mask
            )
        else:
            for block in self.blocks:
                h = block(h, None if full else mask, rotary=self.rotary)
        return self.norm(h), mask

    def token_states(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) token ids -> (B, L, d_model): each input token's state after the last block (and the final
        norm), before pooling and the head; what a masked-LM head reads (``MaskedLanguageModelTask``)."""
        if self.tokens is None:
            raise ValueError("token_states needs token inputs (vocab_size > 0)")
        h, _ = self._states(x, lengths)
        return h[:, 1:] if self.cls is not None else h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, C) float, or (B, L) token ids with ``vocab_size``; lengths: (B,), None when all are L
        -> (B, num_outputs)."""
        h, mask = self._states(x, lengths)
        if self.pooling == "cls":
            return self.head(h[:, 0])
        if self.pooling == "flatten":
            h = h * mask.unsqueeze(-1)  # pads contribute nothing
            h = F.pad(h, (0, 0, 0, self.n_tokens - mask.shape[1]))
            return self.head(h.flatten(1))
        return self.head(masked_mean(h, mask))
