"""Checkpoints as runs write them: ``last.ckpt`` as the true latest state of a run (named checkpoints a user
gives are read by ``archbench.checkpoint_files``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import NamedTuple

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_prefixed_message, rank_zero_warn

from archbench.errors import ConfigError

# where Lightning says it received SIGTERM
log = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
NAMED = ("last", "best", "hpc", "registry")  # resolved by Lightning (and `fit --ckpt_path last` by us)


# the SIGTERMs this process got during its DDP fit (stop_after_the_step_without_broadcast)
_SIGTERMS: list[int] = []


class Interrupted(NamedTuple):
    """Where a Ctrl-C stopped this process's run (Lightning says it, then exits with status 1), for the command's
    message."""

    step: int  # the steps done; -1: outside training (the sanity check, a validation)
    saved: bool  # whether the run had a save to resume from (its own, or the checkpoint it resumed from)
    saved_step: int | None  # the step of the last save, where LastCheckpoint knows it
    folder: str | None  # the run's folder


_INTERRUPTED: list[Interrupted] = []


def interrupted_at() -> Interrupted | None:
    """Where a Ctrl-C stopped the run; None when no Ctrl-C stopped one."""
    return _INTERRUPTED[-1] if _INTERRUPTED else None


def stop_after_the_step_without_broadcast(trainer) -> None:
    """Under DDP, SIGTERM handled as Lightning's handler does (note it, forward it to the processes Lightning started,
    stop after the step under way) but without the broadcast Lightning 2.6's handler makes from inside the signal
    handler (Lightning-AI/pytorch-lightning#20825; the hang it meant to fix is #20806). Run whenever the signal lands,
    that broadcast pairs with whatever collective the other process is in (DDP's buffer broadcast, the per-batch
    stop broadcast) and both processes waited forever: 3 of 15 tries here, a kill of rank 0 or of the process group,
    where rank 1 gets two SIGTERMs (the group's and rank 0's forward) and broadcasts twice. The stop still reaches
    every process in step: rank 0's flag is broadcast at every batch's start (``_broadcast_sigterm_tensor``), and a
    process whose peer stopped first finds it gone (said as the stop, ``on_exception``). Later SIGTERMs are
    dropped: a second ``kill`` does not stop a run that is stopping; SIGKILL does. Private: Lightning offers no
    public way to handle SIGTERM without its broadcast (its connector's ``received_sigterm`` is what its loops read)."""
    if threading.current_thread() is not threading.main_thread():
        return
    connector = trainer._signal_connector
    # the handler from before the fit, which Lightning's calls too
    before = connector._original_handlers.get(signal.SIGTERM)
    _SIGTERMS.clear()

    def handler(signum, frame):
        _SIGTERMS.append(signum)
        if len(_SIGTERMS) > 1:
            return
        log.info(rank_prefixed_message(f"Received SIGTERM: {signum}", trainer.local_rank))
        if trainer.strategy.launcher is not None:
            trainer.strategy.launcher.kill(signum)
        connector.received_sigterm = True
        if callable(before):
            before(signum, frame)

    signal.signal(signal.SIGTERM, handler)  # Lightning's teardown puts back the handler from before the fit


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` as the true latest state of a run, whatever the monitored metric says.

    Written at the end of every validation, at the end of training (so the final step is always on disk), and
    optionally every ``every_n_train_steps`` steps or ``every_n_minutes`` of training (for long epochs): a
    kill loses at most the steps since the last save. Since Lightning 2.6, ``ModelCheckpoint(save_last=True)``
    with a monitored top-k writes ``last.ckpt`` only where a top-k checkpoint was saved, so it is a copy of the
    best; this callback keeps the two apart (the best checkpoint comes from the monitored ``ModelCheckpoint``).
    It is a ``ModelCheckpoint`` so that Lightning's ``ckpt_path="last"`` finds what it writes.

    A run that ended (its budget reached, or stopped early) and is resumed says so and trains nothing.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
    ):
        """
        Args:
            dirpath: Folder of ``last.ckpt``. Empty: the run's ``checkpoints`` folder, beside the best one.
            every_n_train_steps: Also save every this many optimizer steps.
            every_n_minutes: Also save after this many minutes of training since the last save.
        """
        super().__init__(
            dirpath=dirpath, monitor=None, save_top_k=0, save_last=True, enable_version_counter=False
        )
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigError(
                f"LastCheckpoint.every_n_train_steps: {every_n_train_steps} is not a positive integer"
            )
        if every_n_minutes is not None and not every_n_minutes > 0:
            raise ConfigError(f"LastCheckpoint.every_n_minutes: {every_n_minutes} is not positive")
        self.every_n_train_steps, self.every_n_minutes = every_n_train_steps, every_n_minutes
        self._saved_step: int | None = None
        self._since = time.monotonic()
        self._finished: dict | None = None  # {"step", "stopped_early"} once training ended
        self._resumed_finished: dict | None = None  # the same, of the checkpoint this fit resumed

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def state_dict(self) -> dict:
        return {
            "last_model_path": self.last_model_path,
            "saved_step": self._saved_step,
            "finished": self._finished,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._saved_step, self._finished = state_dict.get("saved_step"), state_dict.get("finished")
        self._resumed_finished = self._finished

    def _save(self, trainer, finished: bool = False) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if finished:
            self._finished = {"step": trainer.global_step, "stopped_early": bool(trainer.should_stop)}
        elif self._saved_step == trainer.global_step:
            return
        self.last_model_path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        # set before the save, whose state_dict() holds it: a resumed run knows the step of its last save
        before, self._saved_step = self._saved_step, trainer.global_step
        try:
            trainer.save_checkpoint(self.last_model_path, weights_only=False)  # a full checkpoint: resumable
        except BaseException:
            self._saved_step = before
            raise
        self._since = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        _INTERRUPTED.clear()  # a Ctrl-C of an earlier fit in this process is not this one's
        if trainer.ckpt_path:  # the checkpoint resumed from is the run's latest save (checkpoints of earlier
            self._saved_step = trainer.global_step  # versions kept the save before it)
        self._since = time.monotonic()
        if trainer.world_size > 1:  # after Lightning set its handlers (Trainer._run), before the first step
            stop_after_the_step_without_broadcast(trainer)
        done = self._resumed_finished
        if done and not done["stopped_early"] and trainer.max_steps != -1:
            # trials 25 and 26: max_epochs 2 -> 4 with max_steps set trained one epoch, not two; max_steps 60 -> 80
            # numbered the rest of an epoch as the next
            rank_zero_warn(
                "training on a finished run with trainer.max_steps set: Lightning 2.6 restores it as if stopped "
                "inside an epoch and counts the epoch it stopped in as done, so the epochs from here are numbered "
                "one higher than an uninterrupted run's (another data order), and where max_epochs is the bound "
                "one epoch fewer trains. To train on exactly, start a new run from its weights "
                "(--model.init_from CKPT)",
                stacklevel=2,
            )
        if done and done["stopped_early"]:
            trainer.should_stop = True  # the loop ends before its first step
            if trainer.is_global_zero:
                print(
                    f"nothing to train: this run was stopped at step {done['step']} by a callback "
                    "(early stopping, a time limit); start a new run to train on"
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = bool(self.every_n_train_steps) and trainer.global_step % self.every_n_train_steps == 0
        if self.every_n_minutes is not None:
            late = time.monotonic() - self._since >= 60 * self.every_n_minutes
            due = due or trainer.strategy.broadcast(late)  # rank 0's clock decides: every rank saves, or none
        if due:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.enable_validation:  # no validation to save after: save at the epoch's end
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if not (self._finished and self._finished["step"] == trainer.global_step):
            self._save(trainer, finished=True)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (a scheduler's time limit or pre-emption, ``kill``): Lightning ends the batch under way, then
        raises; the state is whole there, so it is saved, and the run resumes from the step it was stopped at
        rather than from the last save. The checkpoint is set on the exception (``last_checkpoint``) for the
        command's message. Not saved (the last save stands): during a validation; between the micro-batches of
        an accumulated step (their gradients are in no checkpoint); under several processes, whose ranks may
        stop a batch apart (a save's barrier would wait for a rank that trains on)."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # Ctrl-C, anywhere in a step: its state is not whole, so nothing is saved; the command says the step
        if isinstance(exception, KeyboardInterrupt):
            step = trainer.global_step if trainer.training else -1  # -1: not while training
            # the first logger's folder, not trainer.log_dir: a collective under DDP, where the ranks stop apart
            folder = trainer.loggers[0].log_dir if trainer.loggers else None
            _INTERRUPTED.append(Interrupted(step, self._has_save(trainer), self._saved_step, folder))
        stopped = trainer.received_sigterm or bool(_SIGTERMS)
        if isinstance(exception, RuntimeError) and stopped and trainer.world_size > 1:
            # A SIGTERM to every process (a scheduler's, a kill of the process group): they stop a step apart, and
            # one still in a collective finds its peer gone (gloo's "Connection closed by peer"): the stop, said
            # as such by the command (experiments.__main__), not a fault of its own
            exception.after_sigterm = True
        if not isinstance(exception, SIGTERMException) or not trainer.training:
            return
        # for the command's message: a run with no save at all starts over rather than resuming
        exception.saved_before = self._has_save(trainer)
        if trainer.world_size > 1 or trainer.accumulate_grad_batches > 1:
            return
        self._save(trainer)
        if self._saved_step == trainer.global_step:
            exception.last_checkpoint = self.last_model_path

    def _has_save(self, trainer) -> bool:
        """Whether the run has a save to resume from: one of this fit's, or the checkpoint it resumed from."""
        return self._saved_step is not None or trainer.ckpt_path is not None

    def on_fit_end(self, trainer, pl_module) -> None:
        done = self._resumed_finished
        nothing_trained = done and done["step"] == trainer.global_step and not done["stopped_early"]
        if nothing_trained and trainer.is_global_zero:
            print(
                f"nothing to train: this run had finished at step {trainer.global_step} "
                "(raise trainer.max_epochs or trainer.max_steps to train on)"
            )
