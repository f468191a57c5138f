"""Recurrent sequence models: RNN (tanh), GRU and LSTM from torch, with padding packed away."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from archbench.errors import NET, ConfigError
from lit_models.embedding import input_layer
from lit_models.pooling import full_lengths, masked_mean, padding_mask
from lit_models.stem import ConvStem

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentNet(nn.Module):
    """A stack of recurrent layers and a linear head on the final state (or the mean of all states).

    Padding never reaches the final state: padded batches are packed, so each sequence's state is the one
    after its own last real base.
    """

    def __init__(
        self,
        in_channels: int | None,
        num_outputs: int,
        vocab_size: int = 0,
        embedding_dim: int = 128,
        embedding_scale: bool = False,
        cell: Literal["rnn", "gru", "lstm"] = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: Literal["last", "mean", "none"] = "last",
        stem_channels: int = 0,
        stem_kernel_size: int = 15,
        stem_pool_size: int = 1,
    ):
        """
        Args:
            in_channels: Features per position (4 for one-hot DNA); linked from the data.
            num_outputs: Outputs per sequence; linked from the data.
            vocab_size: Above 0, inputs are token ids (B, L) and an embedding reads them; linked from the data.
            embedding_dim: Width of the token embedding (text only).
            embedding_scale: Multiply embeddings by sqrt(embedding_dim).
            cell: ``rnn`` (tanh), ``gru`` or ``lstm``.
            hidden_size: Width of the recurrent state.
            num_layers: Stacked recurrent layers.
            bidirectional: Also read each sequence backwards; the head sees both final states.
            dropout: Dropout between stacked layers (torch's) and on what the head reads, so that it acts with one
                layer too (torch's alone does nothing there).
            pooling: ``last``: the final state(s); ``mean``: the mean of the top layer's states over real positions;
                ``none``: an output at every position, (B, L, num_outputs) (a language model's next-token
                logits; unidirectional only).
            stem_channels: Above 0, a convolutional stem (see ``ConvStem``) detects local patterns and the
                recurrence reads its ``stem_pool_size``-times shorter output; 0 reads the input as is.
            stem_kernel_size: Width of the stem convolution (about a motif's length for DNA).
            stem_pool_size: Max-pooling after the stem.
        """
        super().__init__()
        if not 0 <= dropout < 1:
            raise ConfigError(f"{NET}.dropout: {dropout} is outside [0, 1)")
        if pooling == "none" and bidirectional:
            raise ValueError(
                "pooling 'none' (an output per position) reads left to right: bidirectional must be false"
            )
        self.pooling = pooling
        self.tokens, in_channels = input_layer(vocab_size, embedding_dim, embedding_scale, in_channels)
        self.stem = (
            ConvStem(in_channels, stem_channels, stem_kernel_size, stem_pool_size) if stem_channels else None
        )
        self.rnn = _CELLS[cell](
            stem_channels or in_channels,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, C) float, or (B, L) token ids with ``vocab_size``; lengths: (B,), None when all are L
        -> (B, num_outputs), or (B, L, num_outputs) with ``pooling: none``."""
        lengths = full_lengths(x, lengths)
        if self.tokens is not None:
            x = self.tokens(x, lengths)
        if self.stem is not None:
            x, lengths = self.stem(x, lengths)
        full = bool((lengths == x.shape[1]).all())
        # Packing costs time; equal-length batches (the common case for DNA) need none.
        inputs = x if full else pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast runs only the LSTM in bf16 (not the RNN or GRU), through oneDNN, whose bf16 LSTM needs
            # AVX-512: on AVX2 machines it fails to build its kernel. The recurrence stays float32 on the CPU.
            with torch.autocast("cpu", enabled=False):
                outputs, state = self.rnn(inputs.float())  # a PackedSequence converts too
        else:
            outputs, state = self.rnn(inputs)
        if self.pooling in ("mean", "none"):
            if not full:
                outputs, _ = nn.utils.rnn.pad_packed_sequence(
                    outputs, batch_first=True, total_length=x.shape[1]
                )
            if self.pooling == "none":
                return self.head(self.drop(outputs))
            return self.head(self.drop(masked_mean(outputs, padding_mask(lengths, x.shape[1]))))
        h_n = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.rnn.bidirectional else h_n[-1]
        return self.head(self.drop(final))
