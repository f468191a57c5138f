"""A convolutional stem shared by the sequence architectures: motif-sized detectors, then fewer positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_models.pooling import padding_mask


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
        keep = padding_mask(lengths, x.shape[1])[:, None, :].to(x.dtype)
        h = F.relu(self.conv(x.transpose(1, 2))) * keep  # (B, channels, L)
        if self.pool_size > 1:
            h = F.max_pool1d(h, self.pool_size, ceil_mode=True)
            lengths = torch.div(lengths + self.pool_size - 1, self.pool_size, rounding_mode="floor")
        return h.transpose(1, 2), lengths
