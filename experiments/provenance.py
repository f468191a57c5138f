"""What produced a result, kept beside it: the command, the settings, the code (git commit, and whether the
tree had uncommitted changes), the library versions, the devices and the time. A table found months later
says how to reproduce it."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "archbench",
    "torch",
    "lightning",
    "torchmetrics",
    "timm",
    "datasets",
    "tokenizers",
    "transformers",
    "wandb",
)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict:
    """The git commit of this checkout and whether its tracked files differ from it (None outside git)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def devices() -> dict:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "torch_threads": torch.get_num_threads(),
    }


def provenance(command: list[str], started: datetime, settings: dict) -> dict:
    """Everything above for a result made by ``command`` with ``settings`` since ``started`` (UTC)."""
    return {
        "command": command,
        "settings": settings,
        **code_version(),
        "versions": versions(),
        "devices": devices(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
