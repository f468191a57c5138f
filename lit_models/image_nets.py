"""Image classifiers beside ResNet and ViT: the course's MNIST CNN, and any timm model as the net."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from archbench.errors import ConfigError, PretrainedError, first_line
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
        if img_size < 6:  # two 3x3 convolutions and a 2x2 pooling leave nothing below 6 pixels
            raise ConfigError(f"data.img_size: {img_size} is below 6, the least MnistCNN reads (two 3x3 convolutions "
                              "and a 2x2 max-pool)")  # fmt: skip
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


def check_weights_file(weights_file: str) -> None:
    """A PretrainedError naming a weights file that is damaged (cut short) or not one at all, before timm reads
    it (its error would say the file does not fit the model)."""
    try:
        if str(weights_file).endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(weights_file, framework="pt") as f:
                f.keys()
        else:
            try:
                torch.load(weights_file, map_location="cpu", mmap=True, weights_only=True)
            except RuntimeError as err:  # a file in torch's old (not zip) format loads, without mmap
                if "mmap can only be used" not in str(err):
                    raise
                torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' own error type, torch's RuntimeError, pickle's, OSError
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise PretrainedError(
            f"model.net.init_args.weights_file: {weights_file} is damaged (cut short?) or not a weights file "
            f"({reason})"
        ) from None


class TimmLoadReport(logging.Handler):
    """What timm says, while building a model, of a weights file it loaded without ``strict`` (it does whenever the
    head is replaced): the model's tensors the file lacked and the file's tensors the model has no place for. timm
    only logs them (the missing ones at INFO level), so a file of another architecture left most of the model at
    its random start without a word; ``refuse_gaps`` makes that an error."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.missing: list[str] = []
        self.unexpected: list[str] = []
        self._logger = logging.getLogger("timm.models._builder")

    def __enter__(self) -> TimmLoadReport:
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"(Missing|Unexpected) keys \((.*)\) (?:discovered|found)", record.getMessage())
        if found:
            keys = [k for k in found.group(2).split(", ") if k]
            (self.missing if found.group(1) == "Missing" else self.unexpected).extend(keys)

    def refuse_gaps(self, model: nn.Module, weights_file: str, name: str, model_kwargs: dict | None) -> None:
        """A PretrainedError when the file left a tensor of the model besides its new head unloaded, or held one
        the model has no place for."""
        heads = model.pretrained_cfg.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        missing = [k for k in self.missing if not k.startswith(tuple(f"{h}." for h in heads))]
        if missing or self.unexpected:
            gaps = [f"{len(missing)} of the model's tensors not in the file"] if missing else []
            gaps += [f"{len(self.unexpected)} of the file's not in the model"] if self.unexpected else []
            first = f"{'missing' if missing else 'unexpected'}: {(missing or self.unexpected)[0]}"
            what = _differences(weights_file, model) or f"{'; '.join(gaps)}; the first: {first}"
            raise PretrainedError(weights_mismatch(weights_file, name, model_kwargs, what))


def weights_mismatch(weights_file: str, name: str, model_kwargs: dict | None, what: str) -> str:
    """One line for a weights file that does not load into the timm model built: ``what`` differs, and the model
    the file was exported for where its metadata says (``export``)."""
    made_for = ""
    if str(weights_file).endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(weights_file, framework="pt") as f:
            saved = f.metadata() or {}
        if "timm.name" in saved:
            made_for = f"; it was exported for name: {saved['timm.name']}, model_kwargs: {saved.get('timm.model_kwargs', '{}')}"
    return (
        f"model.net.init_args.weights_file: {weights_file} does not fit timm's {name} with model_kwargs "
        f"{model_kwargs or {}} ({what}){made_for}"
    )


def _differences(weights_file: str, model: nn.Module) -> str | None:
    """How a weights file and a model differ, counted (tensors of another shape, the model's not in the file
    besides its head, the file's not in the model) with the first of each; None where the file cannot be read
    by name and shape."""
    try:
        if str(weights_file).endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(weights_file, framework="pt") as f:
                saved = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
        else:
            loaded = torch.load(weights_file, map_location="cpu", weights_only=True)
            saved = {k: list(v.shape) for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    except Exception:  # noqa: BLE001 - torch's own message is said instead
        return None
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{h}." for h in ((heads,) if isinstance(heads, str) else heads))
    shapes = [k for k in ours if k in saved and ours[k] != saved[k] and not k.startswith(heads)]
    missing = [k for k in ours if k not in saved and not k.startswith(heads)]
    unexpected = [k for k in saved if k not in ours]
    said = []
    if shapes:
        k = shapes[0]
        said.append(f"{len(shapes)} of another shape (the first: {k} is {saved[k]} in the file, {ours[k]} in the "
                    "model)")  # fmt: skip
    if missing:
        said.append(f"{len(missing)} of the model's tensors not in the file (the first: {missing[0]})")
    if unexpected:
        said.append(f"{len(unexpected)} of the file's not in the model (the first: {unexpected[0]})")
    return "; ".join(said) or None


def _load_error(err: RuntimeError) -> str:
    """torch's list of every tensor that differs as a count and the first (timm's own refusal is one line)."""
    details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    if not details:
        return f"timm: {first_line(err)}"
    first = details[0].replace("copying a param with shape torch.Size(", "").replace("torch.Size(", "")
    counts = sum(
        line.count('", "') + 1 if line.startswith(("Missing", "Unexpected")) else 1 for line in details
    )
    return f"{counts} difference(s); the first: {first[:200]}"


def check_timm_name(name: str) -> None:
    """A ConfigError naming a ``name`` that is no timm model, with the close names timm has."""
    import difflib

    import timm

    if name in timm.list_models() or name in timm.list_models(pretrained=True):
        return
    close = difflib.get_close_matches(str(name), timm.list_models(), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (timm.list_models() lists them)"
    raise ConfigError(f"model.net.init_args.name: {name!r} is not a timm model{hint}")


def timm_data_config(name: str, weights_file: str | None = None) -> dict:
    """The input timm model ``name`` expects (input size, mean/std, interpolation, crop), from its pretrained
    config and, for a file written by ``python -m experiments export``, the data config kept in the file: what
    ``TimmNet`` gives timm, known from the config alone (the CLI links it into the image data)."""
    import timm
    from timm.data import resolve_data_config

    check_timm_name(name)
    cfg = timm.models.get_pretrained_cfg(name) if name in timm.list_models() else None
    config = cfg.to_dict() if cfg is not None else {}
    if weights_file and Path(weights_file).is_file():
        config.update(saved_data_config(weights_file))
    return resolve_data_config(pretrained_cfg=config)


def modules_besides(root: nn.Module, head: nn.Module) -> list[nn.Module]:
    """Modules that together hold every parameter of ``root`` outside ``head``: whole children where they do
    not contain ``head``, the way down to it where they do (e.g. a ConvNeXt's ``head.norm`` beside ``head.fc``),
    and a holder module for the parameters a module owns directly."""
    parts = []
    direct = nn.Module()
    for name, param in root.named_parameters(recurse=False):
        direct.register_parameter(name, param)
    if direct._parameters:
        parts.append(direct)
    for child in root.children():
        if child is head:
            continue
        if any(m is head for m in child.modules()):
            parts += modules_besides(child, head)
        else:
            parts.append(child)
    return parts


class TimmNet(nn.Module):
    """``timm.create_model(name)`` with its head sized for the task: from scratch, pretrained from the hub
    (connected machines), or from a local weights file (safetensors or a state_dict; the head's weights are
    dropped when the class count differs, as timm does for hub weights).

    ``freeze_backbone`` makes it a linear probe: only the classifier trains, on the pooled features of a
    backbone kept frozen and in eval mode. With ``cache_features`` each distinct input's features are computed
    once and kept (keyed by the input's bytes, so a changed or augmented image is computed anew): from the
    second epoch on, training and validation run the classifier only. Under DDP each process keeps its own
    cache of the images its shard brought, which changes every epoch: the cache fills over the first few
    epochs rather than the first. Keys are made on the CPU (one copy of each batch).
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
        freeze_backbone: bool = False,
        cache_features: bool = False,
        max_cached: int = 1_000_000,
        img_size: int | None = None,
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
            freeze_backbone: Train the classifier only (a linear probe): the rest keeps its weights and stays in
                eval mode (no dropout, norm statistics as loaded); ``drop_rate`` applies to the features.
            cache_features: With ``freeze_backbone``: compute each distinct input's features once and reuse
                them (worth it without training augmentation, where the same images come back every epoch).
            max_cached: At most this many inputs' features are kept (about 1.5 KB each for a width of 384);
                past it, new inputs are computed every time (with a warning).
            img_size: Image side; linked from the data. A model built for one input size (a ViT) is built for
                this one (a pretrained position grid is resampled to it) unless ``model_kwargs`` sets
                ``img_size``; other models ignore it.
        """
        super().__init__()
        import timm

        if cache_features and not freeze_backbone:
            raise ValueError(
                "model.net.init_args.cache_features: features change while the backbone trains; "
                "it needs freeze_backbone: true"
            )

        check_timm_name(name)
        kwargs = dict(model_kwargs or {})
        if weights_file in ("None", "null"):  # YAML's text None, not its null
            raise ConfigError(
                f"model.net.init_args.weights_file: {weights_file!r}: for no weights file give null (or an empty "
                "value: --model.net.init_args.weights_file=)"
            )
        if weights_file:
            if not Path(weights_file).is_file():
                relative = (
                    ""
                    if Path(weights_file).is_absolute()
                    else f", relative to the working folder {Path.cwd()}"
                )
                raise PretrainedError(
                    f"model.net.init_args.weights_file: {weights_file!r} not found{relative} (the files under "
                    f"data/pretrained/ come from `python -m experiments data NAME`: for this one, if it is one of "
                    f"them, `python -m experiments data {Path(weights_file).stem}`, run in the project folder)"
                )
            check_weights_file(weights_file)
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file), **saved_data_config(weights_file)}

        def create(**more):
            try:
                with TimmLoadReport() as report:
                    model = timm.create_model(
                        name,
                        pretrained=pretrained or bool(weights_file),
                        num_classes=num_outputs,
                        drop_rate=drop_rate,
                        drop_path_rate=drop_path_rate,
                        **kwargs,
                        **more,
                    )
            except RuntimeError as err:  # torch's list of every tensor that differs (or timm's own): one line
                if not weights_file:
                    raise
                # every difference counted against the model itself: torch's list stops at the shapes when
                # the model's other tensors are missing (trial 29: '4 difference(s)' of some hundred)
                bare = {k: v for k, v in kwargs.items() if k != "pretrained_cfg_overlay"}
                blank = timm.create_model(name, pretrained=False, num_classes=num_outputs, **bare, **more)
                what = _differences(weights_file, blank) or _load_error(err)
                raise PretrainedError(weights_mismatch(weights_file, name, model_kwargs, what)) from None
            except (OSError, ValueError) as err:  # the hub's weights, not reached (offline) or not there
                if not pretrained or weights_file:
                    raise
                raise PretrainedError(
                    f"model.net.init_args.pretrained: {name}'s pretrained weights could not be fetched from the "
                    f"Hugging Face Hub ({first_line(err)}); without a connection give a local "
                    "model.net.init_args.weights_file, or pretrained: false"
                ) from None
            if weights_file:  # timm loads leniently when the head is new: a file of another model half-loaded
                report.refuse_gaps(model, weights_file, name, model_kwargs)
            return model

        self._timm = (name, dict(model_kwargs or {}))  # what ``export`` names (timm_args)
        if img_size is None or "img_size" in kwargs:
            self.model = create()
            self._check_size(kwargs.get("img_size"), img_size)
        else:  # built for the data's size where the model has one (ViTs: position grid resampled on load)
            try:
                self.model = create(img_size=img_size)
                self._timm[1]["img_size"] = img_size
                self._check_size(None, img_size)
            except TypeError as err:
                if "img_size" not in str(err):
                    raise
                self.model = create()  # a model without a fixed input size (CNNs)
        if reset_head:
            self.model.reset_classifier(num_outputs)
        elif weights_file:
            self._keep_matching_head(weights_file)
        if weights_file:  # said, as init_from says its checkpoint (trial 25: it loaded without a word)
            rank_zero_info(f"model.net.init_args.weights_file: {name} starts from {weights_file}")
        self.freeze_backbone, self.cache_features = freeze_backbone, cache_features
        self.max_cached = max_cached
        self.feature_dropout = nn.Dropout(drop_rate)
        # the input's bytes' digest -> its features: a plain dict, never in the state_dict or a checkpoint
        self._cache: dict[bytes, torch.Tensor] = {}
        self.cache_hits = self.cache_misses = 0
        self._cache_full = False
        if freeze_backbone:
            if not isinstance(self.model.get_classifier(), nn.Module):  # distilled models: two heads
                raise ValueError(
                    f"model.net.init_args.freeze_backbone: {name} has no single classifier to train on its "
                    "features; choose another model or train it whole"
                )
            for module in self.backbone_modules():
                module.requires_grad_(False)
            self.train(self.training)

    def timm_args(self) -> tuple[str, dict]:
        """The timm model ``export`` writes these weights for: this net's own name and ``model_kwargs`` (with the
        input size it was built for, where the model has one)."""
        return self._timm[0], dict(self._timm[1])

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in timm's names: the timm model's own."""
        return self.model.state_dict()

    def _check_size(self, built, data_size: int | None) -> None:
        """A model that takes one input size only (a ViT's patch grid) built by ``model_kwargs`` for another size
        than the data's: refused now, not at the first batch (a traceback from inside timm)."""
        strict = getattr(getattr(self.model, "patch_embed", None), "strict_img_size", False)
        patch = getattr(getattr(self.model, "patch_embed", None), "patch_size", None)
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        side = built if isinstance(built, int) else data_size
        if isinstance(patch, int) and side and side % patch:  # the patch convolution's stride drops the rest
            raise ConfigError(
                f"data.img_size: {side} is not a multiple of {self._timm[0]}'s patch size {patch}: the last "
                f"{side % patch} pixels of each side would not be read; give a multiple (e.g. {side - side % patch})"
            )
        sides = set(built) if isinstance(built, (list, tuple)) else {built}
        if strict and built is not None and data_size is not None and sides != {data_size}:
            raise ConfigError(
                f"model.net.init_args.model_kwargs.img_size: {built}, but the data's images are "
                f"{data_size}x{data_size} (data.img_size, or the weights file's input size): drop img_size from "
                f"model_kwargs (the net is then built for the data's size) or give --data.img_size {built}"
            )

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
    def head_prefixes(self) -> tuple[str, ...]:
        """The classifier's tensor names (``init_from`` gives another class count a fresh one): timm's own."""
        heads = self.model.pretrained_cfg.get("classifier") or ()
        return tuple(f"model.{h}." for h in ((heads,) if isinstance(heads, str) else heads))

    @property
    def pretrained_cfg(self) -> dict:
        """timm's data config for this model (input size, mean/std, interpolation, crop): the data uses it."""
        return self.model.pretrained_cfg

    def backbone_modules(self) -> list[nn.Module]:
        """Every part of the timm model but its classifier (what a fine-tuning callback freezes), parameters held
        by the model itself included (a ViT's class token and position embedding)."""
        return modules_besides(self.model, self.model.get_classifier())

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer map of the model inside (for layer-wise learning-rate decay)."""
        return prefixed_matcher(self.model.group_matcher(coarse=coarse), "model.")

    def no_weight_decay(self) -> set[str]:
        inner = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        return {f"model.{name}" for name in inner}

    def train(self, mode: bool = True) -> TimmNet:
        """A frozen backbone stays in eval mode whatever the trainer sets."""
        super().train(mode)
        if self.freeze_backbone:
            for module in self.backbone_modules():
                module.eval()
        return self

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs); ``lengths`` is ignored (whole images)."""
        if not self.freeze_backbone:
            return self.model(x)
        return self.model.get_classifier()(self.feature_dropout(self.features(x)))

    def _backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen backbone's pooled features (B, width), from the cache where this input was seen."""
        if not self.cache_features:
            return self._backbone_features(x)
        raw = x.detach().flatten(1).contiguous().cpu().view(torch.uint8).numpy()
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in raw]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        self.cache_hits += len(keys) - len(missing)
        self.cache_misses += len(missing)
        computed = {}
        if missing:
            index = torch.tensor(missing, device=x.device)
            computed = dict(zip(missing, self._backbone_features(x.index_select(0, index)), strict=True))
            room = self.max_cached - len(self._cache)
            if room < len(missing) and not self._cache_full:
                self._cache_full = True
                warnings.warn(
                    f"TimmNet: the feature cache is full ({self.max_cached:,} inputs, model.net.init_args."
                    "max_cached); new inputs are computed every time (is the training data augmented?)",
                    stacklevel=2,
                )
            for i in missing[: max(room, 0)]:
                self._cache[keys[i]] = computed[i]
        rows = [computed[i] if i in computed else self._cache[key] for i, key in enumerate(keys)]
        # as this call computes them: its device and dtype (autocast may change the dtype)
        like = rows[missing[0]] if missing else rows[0]
        return torch.stack([r.to(device=like.device, dtype=like.dtype) for r in rows])
