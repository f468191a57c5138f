"""Checkpoint and weights files a user names (``--ckpt``, ``model.init_args.init_from``, ``--weights``): read safely,
or one line saying why not."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from archbench.errors import ConfigError, first_line


def check_checkpoint(path: str | Path, option: str = "ckpt_path") -> dict:
    """The checkpoint at ``path`` read with ``weights_only=True`` (memory-mapped: the weights stay on disk), or a
    ConfigError that names the option, the path and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        if (path / ".metadata").is_file() or (path / "meta.pt").is_file():
            return {}  # a sharded (FSDP) checkpoint folder: Lightning's strategy reads it
        raise ConfigError(f"{option}: {str(path)!r} is a directory, expected a checkpoint file (.ckpt)")
    if not path.is_file():
        raise ConfigError(f"{option}: file {str(path)!r} not found{_beside(path)}")
    if path.suffix.lower() == ".safetensors":
        raise ConfigError(
            f"{option}: {str(path)!r} holds weights alone (safetensors), not a run's checkpoint (.ckpt): a timm net "
            "starts from it with --model.net.init_args.weights_file"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as err:
        first = first_line(err, 1000)
        if "Weights only load failed" in first:
            raise ConfigError(
                f"{option}: {str(path)!r} refused: it holds more than tensors and plain values, so it does not "
                "load with weights_only=True (unpickling runs code: torch.load it yourself only if you trust it)"
            ) from None
        raise ConfigError(
            f"{option}: {str(path)!r} is not a checkpoint or is damaged ({first[:120]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = first_line(err, 120)
        raise ConfigError(
            f"{option}: {str(path)!r} is not a checkpoint or is damaged (truncated by a kill or a full disk?): "
            f"{first}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"{option}: {str(path)!r} is a torch file but not a Lightning checkpoint (no state_dict)"
        )
    return checkpoint


def checkpoint_data(checkpoint: dict) -> str:
    """The class path of the datamodule a Lightning checkpoint was trained on (``datamodules.dna.DNADataModule``),
    from the hyperparameters LightningCLI saves; empty when it does not say."""
    return str((checkpoint.get("datamodule_hyper_parameters") or {}).get("_class_path") or "")


def checkpoint_task(checkpoint: dict) -> str:
    """The class name of the task a Lightning checkpoint was saved from (``LanguageModelTask``), from the
    hyperparameters LightningCLI saves; empty when it does not say."""
    return str((checkpoint.get("hyper_parameters") or {}).get("_class_path") or "").rsplit(".", 1)[-1]


def run_config(ckpt: str | Path) -> Path | None:
    """The config a run saved beside its checkpoints (``RUN/config.yaml`` for ``RUN/checkpoints/X.ckpt``), or
    None: what rebuilds that run's model, overrides included."""
    path = Path(ckpt).resolve()
    return next(
        (f / "config.yaml" for f in (path.parent.parent, path.parent) if (f / "config.yaml").is_file()), None
    )


def configs_for(ckpt: str, given: list[str] | None) -> list[str]:
    """The ``--config`` files that rebuild a checkpoint's model: those given, else its run's own config.yaml."""
    if given:
        return given
    found = run_config(ckpt)
    if found is None:
        raise ConfigError(
            f"--config: give the config(s) the checkpoint was trained with; no run config.yaml beside --ckpt {ckpt}"
        )
    return [str(found)]


def with_run_config_hint(err: ConfigError, ckpt: str, given: list[str]) -> ConfigError:
    """A does-not-fit error, pointing to the run's own config.yaml when there is one and it was not given."""
    found = run_config(ckpt)
    if found is None or any(Path(g).resolve() == found for g in given):
        return err
    return ConfigError(f"{err} (the run's own: --config {found})")


def gguf_in(folder: Path) -> Path | None:
    """The GGUF file of a weights folder, None where it has none. A folder of several is refused: which file the
    model and which the tokenizer would come from would be a guess."""
    found = sorted(folder.glob("*.gguf"))
    if len(found) > 1:
        names = ", ".join(f.name for f in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ConfigError(f"{str(folder)!r} holds {len(found)} .gguf files ({names}): name the one to use")
    return found[0] if found else None


def _beside(path: Path) -> str:
    """What a missing checkpoint's folder holds instead, newest first (``best-epoch=3-step=40.ckpt``: best
    checkpoints carry their epoch and step in the name), for the message; or that the folder itself is missing.
    A folder that cannot be listed adds nothing."""
    folder = path.parent
    try:
        if not folder.is_dir():
            return f" (nor is its folder {str(folder)!r})" if str(folder) not in ("", ".") else ""
        found = []
        for p in folder.iterdir():
            try:
                sharded = p.is_dir() and ((p / ".metadata").is_file() or (p / "meta.pt").is_file())
                if (p.suffix == ".ckpt" and p.is_file()) or sharded:
                    found.append((p.stat().st_mtime, p.name))
            except OSError:  # a folder of someone else's, say
                continue
    except OSError:
        return ""
    if not found:
        return f" ({str(folder)!r} holds no checkpoint)"
    names = [name for _, name in sorted(found, reverse=True)]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f" ({str(folder)!r} holds {shown}, newest first)"
