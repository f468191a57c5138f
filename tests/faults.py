"""Faults the scale-and-survive tests inject into real runs (importable by ``python -m experiments`` children:
tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class KillAt(Callback):
    """SIGKILL this process (a real kill: no clean-up, no handlers) when training reaches ``step``."""

    SIGNAL = signal.SIGKILL

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.SIGNAL)


class TermAt(KillAt):
    """``KillAt`` with SIGTERM, as a scheduler's time limit sends: Lightning's handler lets the step end."""

    SIGNAL = signal.SIGTERM


class InterruptAt(KillAt):
    """``KillAt`` with SIGINT, as Ctrl-C in a terminal sends."""

    SIGNAL = signal.SIGINT


class TermParentAt(KillAt):
    """At ``step``, SIGTERM the parent process (a comparison's local launcher, as ``kill`` or a scheduler signals
    it), then wait up to 60 s for the SIGTERM the launcher passes on to this worker."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getppid(), signal.SIGTERM)
            deadline = time.monotonic() + 60
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


class KillOnce(KillAt):
    """``KillAt``, but only the first process of all to reach ``step`` dies: it creates ``marker`` (atomically)
    first, so a re-run with the same settings goes through."""

    def __init__(self, step: int, marker: str):
        super().__init__(step)
        self.marker = marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


class NaNAt(Callback):
    """Make the net's output NaN (hence the loss) on the training batch at ``step``."""

    def __init__(self, step: int):
        self.step = step
        self.changed: bool | None = None  # did that batch change the weights?

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self._before = [p.detach().clone() for p in pl_module.parameters()]
            self._hook = pl_module.net.register_forward_hook(lambda m, i, out: out * float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if getattr(self, "_hook", None) is not None:
            self._hook.remove()
            self._hook = None
            after = list(pl_module.parameters())
            self.changed = any(not torch.equal(a, b) for a, b in zip(self._before, after, strict=True))


class NaNValidationFrom(Callback):
    """Make the net's output NaN in every validation after ``step`` training steps (the training losses finite):
    weights whose outputs overflow on the held-out data."""

    def __init__(self, step: int):
        self.step = step
        self._hook = None

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.global_step >= self.step and not trainer.sanity_checking:
            self._hook = pl_module.net.register_forward_hook(lambda m, i, out: out * float("nan"))

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class WeightsDigest(Callback):
    """At the end of ``fit``, each process writes a digest of its weights to ``folder/rank<N>.txt``."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_fit_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(
                name.encode()
                + tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            )
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"rank{trainer.global_rank}.txt").write_text(digest.hexdigest())


def example_digests(batch: dict) -> list[str]:
    """One short digest per example of a batch as the model sees it (its real positions and its label)."""
    x, lengths = batch["x"], batch.get("lengths")
    out = []
    for i in range(len(x)):
        row = x[i] if lengths is None else x[i, : int(lengths[i])]
        if "target" in batch:  # sequence pairs: the target sequence, markers included
            label = batch["target"][i, : int(batch["target_lengths"][i])]
        else:
            y = batch["y"]
            label = (
                y[i] if y.dim() == 1 or lengths is None else y[i, : int(lengths[i])]
            )  # per-token: real ones
        label = label.detach().cpu().numpy().tobytes()
        payload = row.detach().cpu().contiguous().numpy().tobytes() + label
        out.append(hashlib.sha1(payload).hexdigest()[:16])
    return out


class RecordBatches(Callback):
    """Each process writes ``folder/rank<N>.json``: per stage, the digests of every batch it saw, in order
    (training batches with their epoch)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.seen = {"train": [], "val": [], "test": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen["train"].append([trainer.current_epoch, example_digests(batch)])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.seen["val"].append([trainer.current_epoch, example_digests(batch)])

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen["test"].append([0, example_digests(batch)])

    def _write(self, trainer) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)


class RecordStart(Callback):
    """Writes the step training starts at (after any restore) to ``path``."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(str(trainer.global_step))
