"""Token embedding for text: ids -> vectors, so every sequence architecture can read tokens."""

from __future__ import annotations

import math

import torch
from torch import nn

from lit_models.pooling import padding_mask


class TokenEmbedding(nn.Module):
    """``nn.Embedding`` whose output is optionally multiplied by sqrt(dim), as the original Transformer does
    (so unit-scale embeddings are not swamped by the positional encoding added next).
    """

    def __init__(self, vocab_size: int, dim: int, scale: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.factor = math.sqrt(dim) if scale else 1.0

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) int -> (B, L, dim); with ``lengths``, padding positions are zero vectors (as padding is
        for one-hot DNA), so a convolution reaching past a text's end sees nothing of the pad token.
        """
        h = self.embedding(ids) * self.factor
        if lengths is not None:
            h = h * padding_mask(lengths, ids.shape[1]).unsqueeze(-1).to(h.dtype)
        return h


def input_layer(
    vocab_size: int, embedding_dim: int, scale: bool, in_channels: int | None
) -> tuple[TokenEmbedding | None, int]:
    """The embedding a net puts first when its inputs are token ids (``vocab_size > 0``), and the width of
    what the rest of the net reads: ``embedding_dim`` for tokens, ``in_channels`` for feature vectors.
    """
    if vocab_size > 0:
        return TokenEmbedding(vocab_size, embedding_dim, scale), embedding_dim
    if not in_channels:
        raise ValueError("in_channels must be positive for feature inputs (or set vocab_size for token ids)")
    return None, in_channels
