"""Weights & Biases: online when this machine has credentials, offline otherwise."""

from __future__ import annotations

import contextlib
import netrc
import os
import shutil
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else online with an API key (env or ``wandb login``'s netrc), else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        if path.is_file() and netrc.netrc(path).authenticators("api.wandb.ai"):
            return "online"
    except (netrc.NetrcParseError, OSError):
        pass
    return "offline"


class AutoWandbLogger(WandbLogger):
    """``WandbLogger`` that goes offline when no W&B credentials are found; ``wandb sync`` uploads later."""

    def __init__(
        self, project: str = "archbench", save_dir: str = "runs", offline: bool | None = None, **kwargs
    ):
        """
        Args:
            project: W&B project.
            save_dir: Folder of the local run files (``wandb/offline-run-*`` when offline).
            offline: None: online only when credentials are found (``WANDB_MODE`` is honoured too).
        """
        if offline is None:
            offline = wandb_mode() == "offline"
        # Absolute: W&B's service process keeps the working directory of the first run in this process, and
        # resolves a relative folder there (two compares in one process wrote into the first one's folder).
        save_dir = str(Path(save_dir).resolve())
        super().__init__(project=project, save_dir=save_dir, offline=offline, **kwargs)
        # Lightning 2.6 passes anonymous=None to wandb.init unless asked, and W&B 0.2x warns at every run that
        # the setting "has no effect": a line a user can do nothing about. Left out unless given.
        if self._wandb_init.get("anonymous", "") is None:
            del self._wandb_init["anonymous"]

    @property
    def experiment(self):
        """The W&B run, its folder made when the run starts (not when the logger is built: a command that stops
        on a user's mistake after building it leaves no empty folder behind)."""
        if self._experiment is None:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        return super().experiment


def discard_run(logger: WandbLogger) -> None:
    """End a W&B run that a user's mistake stopped before a step trained, and delete its local files, so that
    ``wandb sync`` has no aborted run to upload (an online run stays on the server, marked failed). The ``wandb``
    folder goes too when no other run is left in it."""
    run = logger.experiment
    folder = Path(run.dir).parent  # wandb/offline-run-...(or run-...)/files
    run.finish(exit_code=1)
    top, own = folder.parent, Path(logger.save_dir).resolve()
    if wandb_mode() == "disabled" or top.name != "wandb" or top.resolve().parent != own:
        return  # no files of its own (disabled: a scratch folder elsewhere), or not where this logger writes
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process's run may appear in it meanwhile: then it stays
        if not any(p.is_dir() and not p.is_symlink() for p in top.iterdir()):
            shutil.rmtree(top)  # its debug logs and the latest-run link alone
