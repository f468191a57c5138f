"""Models for tests, importable by class_path (tests/ is on sys.path under pytest)."""

from torch import nn


class CourseTransformer(nn.Module):
    """The course notebook's bug: the encoder's output is computed, then the head reads the raw input."""

    def __init__(self, in_channels: int, num_outputs: int, seq_len: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=in_channels, nhead=4, dim_feedforward=16, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(in_channels * seq_len, num_outputs)

    def forward(self, x, lengths):
        encoded = self.encoder(x)  # noqa: F841  (the bug, on purpose)
        return self.head(x.flatten(1))
