"""Dilated residual CNN: a convolutional baseline whose receptive field grows exponentially with depth."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lit_models.embedding import input_layer
from lit_models.pooling import full_lengths, masked_max, masked_mean, padding_mask
from lit_models.stem import ConvStem, conv_over_positions


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each position of (B, L, C): unlike BatchNorm, padding cannot leak into it.
    (A module of its own so that checkpoints keep their parameter names.)"""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h)


class DilatedBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding="same")
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """h: (B, L, C), keep: (B, L, 1), 1 at real positions. Positions last, channels innermost throughout:
        elementwise backward kernels over transposed tensors (GELU's above all) fall back to scalar loops on
        the CPU."""
        # Mask the conv's input too: the norm maps padded zeros to its bias, which must not be read.
        return h + self.dropout(conv_over_positions(self.conv, F.gelu(self.norm(h)) * keep)) * keep


class DilatedCNN(nn.Module):
    """A motif-sized stem convolution, max-pooling by ``stem_pool_size``, residual blocks with dilations
    1, 2, 4, ..., pooling over positions, linear head.
    """

    def __init__(
        self,
        in_channels: int | None,
        num_outputs: int,
        vocab_size: int = 0,
        embedding_dim: int = 128,
        channels: int = 64,
        stem_kernel_size: int = 15,
        stem_pool_size: int = 4,
        kernel_size: int = 3,
        num_blocks: int = 5,
        dropout: float = 0.1,
        pooling: Literal["max", "mean", "max_mean"] = "max_mean",
    ):
        """
        Args:
            in_channels: Features per position; linked from the data.
            num_outputs: Outputs per sequence; linked from the data. The receptive field is
                ``stem_kernel_size + stem_pool_size * (1 + (kernel_size - 1) * (2**num_blocks - 1))`` positions.
            vocab_size: Above 0, inputs are token ids (B, L) and an embedding reads them; linked from the data.
            embedding_dim: Width of the token embedding (text only).
            channels: Feature maps in every layer.
            stem_kernel_size: Width of the first convolution (about a motif's length).
            stem_pool_size: Max-pooling after the stem: the blocks run at 1/stem_pool_size of the resolution.
            kernel_size: Width of each dilated convolution.
            num_blocks: Residual blocks; block i has dilation 2**i.
            dropout: Dropout on each block's residual branch.
            pooling: Over real positions: ``max`` (a motif anywhere counts fully), ``mean``, or both
                concatenated (``max_mean``: presence and abundance).
        """
        super().__init__()
        self.pooling = pooling
        self.tokens, in_channels = input_layer(vocab_size, embedding_dim, False, in_channels)
        self.stem = ConvStem(in_channels, channels, stem_kernel_size, stem_pool_size)
        self.blocks = nn.ModuleList(
            DilatedBlock(channels, kernel_size, 2**i, dropout) for i in range(num_blocks)
        )
        self.norm = ChannelNorm(channels)
        self.head = nn.Linear(channels * (2 if pooling == "max_mean" else 1), num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, C) float, or (B, L) token ids with ``vocab_size``; lengths: (B,), None when all are L
        -> (B, num_outputs)."""
        lengths = full_lengths(x, lengths)
        if self.tokens is not None:
            x = self.tokens(x, lengths)
        h, lengths = self.stem(x, lengths)  # (B, L', C)
        mask = padding_mask(lengths, h.shape[1])
        keep = mask[:, :, None].to(h.dtype)
        for block in self.blocks:
            h = block(h, keep)
        h = F.gelu(self.norm(h))  # (B, L', C)
        if self.pooling == "max":
            return self.head(masked_max(h, mask))
        if self.pooling == "mean":
            return self.head(masked_mean(h, mask))
        return self.head(torch.cat([masked_max(h, mask), masked_mean(h, mask)], dim=-1))
