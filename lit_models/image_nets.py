"""Image classifiers beside ResNet and ViT: the course's MNIST CNN, and any timm model as the net."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lit_models.optim import prefixed_matcher


class MnistCNN(nn.Module):
    """The course's MNIST network: conv 32 -> conv 64 -> max-pool -> dropout -> linear 128 -> dropout -> linear.
    1,199,882 parameters for 28x28 grey images and 10 classes.
    """

    def __init__(self, num_outputs: int, in_channels: int = 1, img_size: int = 28, dropout: float = 0.25):
        """
        Args:
            num_outputs: Classes; linked from the data.
            in_channels: Image channels; linked from the data.
            img_size: Image side; linked from the data (sizes the first linear layer).
            dropout: Dropout after pooling (the second dropout, before the last layer, is twice this).
        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        side = (img_size - 4) // 2
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.head = nn.Linear(128, num_outputs)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(2 * dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs); ``lengths`` is ignored (whole images)."""
        h = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        h = F.relu(self.fc1(self.dropout1(h).flatten(1)))
        return self.head(self.dropout2(h))


def saved_data_config(weights_file: str) -> dict:
    """The data config (input size, mean/std, interpolation, crop) that ``python -m experiments export`` keeps
    in a safetensors file's metadata; empty for other files."""
    if not str(weights_file).endswith(".safetensors"):
        return {}
    from safetensors import safe_open

    with safe_open(weights_file, framework="pt") as f:
        metadata = f.metadata() or {}
    config = {}
    for key, value in metadata.items():
        if key.startswith("pretrained_cfg."):
            value = json.loads(value)
            config[key.removeprefix("pretrained_cfg.")] = tuple(value) if isinstance(value, list) else value
    return config


def timm_data_config(name: str, weights_file: str | None = None) -> dict:
    """The input timm model ``name`` expects (input size, mean/std, interpolation, crop), from its pretrained
    config and, for a file written by ``python -m experiments export``, the data config kept in the file: what
    ``TimmNet`` gives timm, known from the config alone (the CLI links it into the image data)."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(name) if name in timm.list_models() else None
    config = cfg.to_dict() if cfg is not None else {}
    if weights_file and Path(weights_file).is_file():
        config.update(saved_data_config(weights_file))
    return resolve_data_config(pretrained_cfg=config)


class TimmNet(nn.Module):
    """``timm.create_model(name)`` with its head sized for the task: from scratch, pretrained from the hub
    (connected machines), or from a local weights file (safetensors or a state_dict; the head's weights are
    dropped when the class count differs, as timm does for hub weights).
    """

    def __init__(
        self,
        name: str,
        num_outputs: int,
        pretrained: bool = False,
        weights_file: str | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        model_kwargs: dict | None = None,
        reset_head: bool = False,
    ):
        """
        Args:
            name: Any ``timm.list_models()`` name, e.g. ``resnet18``, ``vit_small_patch16_224``,
                ``efficientnet_lite0``.
            num_outputs: Classes; linked from the data.
            pretrained: Load timm's pretrained weights from the Hugging Face Hub (needs a connection).
            weights_file: Load weights from this local file instead (timm's ``pretrained_cfg_overlay``). A file
                written by ``python -m experiments export`` also sets the input size and normalisation the
                weights were trained with.
            drop_rate: Dropout before the head.
            drop_path_rate: Stochastic depth.
            model_kwargs: More ``timm.create_model`` arguments (e.g. ``img_size``, ``in_chans``).
            reset_head: A new head even when the weights' head fits the class count (fine-tuning on other
                classes than the weights were trained on, with as many of them).
        """
        super().__init__()
        import timm

        if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
            raise ValueError(f"model.net.init_args.name: {name!r} is not a timm model")
        kwargs = dict(model_kwargs or {})
        if weights_file:
            if not Path(weights_file).is_file():
                raise FileNotFoundError(f"model.net.init_args.weights_file: {weights_file!r} not found")
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file), **saved_data_config(weights_file)}
        self.model = timm.create_model(
            name,
            pretrained=pretrained or bool(weights_file),
            num_classes=num_outputs,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **kwargs,
        )
        if reset_head:
            self.model.reset_classifier(num_outputs)
        elif weights_file:
            self._keep_matching_head(weights_file)

    def _keep_matching_head(self, weights_file: str) -> None:
        """timm drops a weights file's classifier whenever the class count differs from the model's default
        config (1000); a file whose classifier already fits this task (our own exported run) keeps it."""
        head = self.model.pretrained_cfg.get("classifier")
        if not isinstance(head, str):
            return
        if weights_file.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(weights_file)
        else:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
        target = self.model.get_submodule(head)
        saved = {k[len(head) + 1 :]: v for k, v in state.items() if k.startswith(head + ".")}
        if saved and all(k in saved and saved[k].shape == v.shape for k, v in target.state_dict().items()):
            target.load_state_dict(saved)

    @property
    def pretrained_cfg(self) -> dict:
        """timm's data config for this model (input size, mean/std, interpolation, crop): the data uses it."""
        return self.model.pretrained_cfg

    def backbone_modules(self) -> list[nn.Module]:
        """The timm model's parts but its classifier (what a fine-tuning callback freezes)."""
        head = self.model.get_classifier()
        return [m for m in self.model.children() if m is not head]

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer map of the model inside (for layer-wise learning-rate decay)."""
        return prefixed_matcher(self.model.group_matcher(coarse=coarse), "model.")

    def no_weight_decay(self) -> set[str]:
        inner = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        return {f"model.{name}" for name in inner}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs); ``lengths`` is ignored (whole images)."""
        return self.model(x)
