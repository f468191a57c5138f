"""ResNet with BasicBlocks (ResNet-18 and -34), built from scratch.

Layer names follow torchvision's and timm's ``resnet18`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``fc``), so their state_dicts load as they are: the tests copy timm's weights in and compare logits.
"""

from __future__ import annotations

import torch
from torch import nn

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + shortcut)


class ResNet(nn.Module):
    """7x7 stride-2 stem and max-pool (or a 3x3 stem for small images), four stages of BasicBlocks
    (64-128-256-512 channels), global average pooling and a linear head.
    """

    head_prefixes = ("fc.",)  # the classifier's tensors, torchvision's name: init_from gives it a fresh one

    def __init__(
        self,
        num_outputs: int,
        in_channels: int = 3,
        depth: int = 18,
        width: int = 64,
        small_input: bool = False,
    ):
        """
        Args:
            num_outputs: Classes; linked from the data.
            in_channels: Image channels; linked from the data.
            depth: 18 or 34 (BasicBlock ResNets).
            width: Channels of the first stage (doubled at each of the next three).
            small_input: A 3x3 stride-1 stem without max-pooling, for 28-32 pixel images (the 7x7 stride-2 stem
                and pool would shrink a 28x28 image to 7x7 before the first block).
        """
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth={depth}: BasicBlock ResNets are {sorted(DEPTHS)}")
        self.depth = depth
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        for i, blocks in enumerate(DEPTHS[depth]):
            out = width * 2**i
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(channels, out, stride)] + [BasicBlock(out, out) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            channels = out
        self.num_features = channels
        self.fc = nn.Linear(channels, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # each block starts as the identity (zero-init of its last norm)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Which layer each parameter is in, as timm's ResNet says it (for layer-wise learning-rate decay)."""
        return {"stem": r"^conv1|bn1|maxpool", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in timm's (and torchvision's) names: they are ours already."""
        return self.state_dict()

    def timm_args(self) -> tuple[str, dict] | None:
        """The timm model these weights load into (``resnet18``/``resnet34``, with ``in_chans`` in its
        ``model_kwargs`` for other than 3 channels), or None where timm's ResNets have no such layout: the
        small-input stem (3x3, stride 1, no pooling), a first stage other than 64 channels wide."""
        if isinstance(self.maxpool, nn.Identity) or self.conv1.out_channels != 64:
            return None
        channels = self.conv1.in_channels
        return f"resnet{self.depth}", ({"in_chans": channels} if channels != 3 else {})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features) pooled features."""
        h = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            h = getattr(self, f"layer{i}")(h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs); ``lengths`` is ignored (whole images)."""
        return self.fc(self.forward_features(x))
