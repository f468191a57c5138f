"""A convolutional stem shared by the sequence architectures: motif-sized detectors, then fewer positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_models.pooling import padding_mask


def conv_over_positions(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to (B, L, C_in) -> (B, L, C_out), with no transposed copies.

    The (B, C, 1, L) view of a contiguous (B, L, C) tensor is channels-last memory, which oneDNN's 2-D
    convolution reads and writes as it is (the same weights viewed as (C_out, C_in, 1, k)). ``conv(h.transpose(1,
    2))`` copies the input, the output and both gradients between layouts: on 2 CPU cores the CNN's steps took
    about a quarter longer that way.
    """
    padding = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
    out = F.conv2d(
        h.transpose(1, 2).unsqueeze(2),
        conv.weight.unsqueeze(2),
        conv.bias,
        (1, conv.stride[0]),
        padding,
        (1, conv.dilation[0]),
        conv.groups,
    )
    return out.squeeze(2).transpose(1, 2)


class ConvStem(nn.Module):
    """Convolution (``kernel_size`` wide, ReLU) at full resolution, then max-pooling by ``pool_size``.

    Padding-aware: padded positions are zeroed after the convolution, and since ReLU outputs are >= 0 they
    never win a pooling window's max. Lengths shrink to ceil(length / pool_size).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 15, pool_size: int = 1):
        super().__init__()
        self.pool_size = pool_size
        self.conv = nn.Conv1d(in_channels, channels, kernel_size, padding="same")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, L, C), lengths: (B,) -> (B, ceil(L / pool_size), channels), new lengths (B,)."""
        keep = padding_mask(lengths, x.shape[1])[:, :, None].to(x.dtype)
        h = F.relu(conv_over_positions(self.conv, x)) * keep  # (B, L, channels)
        if self.pool_size > 1:  # over the channels-last (B, C, 1, L) view, as the convolution
            h = F.max_pool2d(h.transpose(1, 2).unsqueeze(2), (1, self.pool_size), ceil_mode=True)
            h = h.squeeze(2).transpose(1, 2)
            lengths = torch.div(lengths + self.pool_size - 1, self.pool_size, rounding_mode="floor")
        return h, lengths
