"""Callbacks of the command line: measurements for the comparison table, and the prediction writer."""

from __future__ import annotations

from pathlib import Path

import psutil
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_warn

from archbench.errors import ConfigError, NonFiniteLossError
from datamodules.files import write_atomic


def batch_size(batch) -> int:
    """Examples in a batch (a dict of tensors, or a tuple whose first item is the inputs): for Lightning's
    ``ThroughputMonitor(batch_size_fn=...)``."""
    if isinstance(batch, dict):
        batch = batch.get("y", next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return len(batch)


def batch_items(batch) -> int:
    """Items a batch trains on, for ``ThroughputMonitor(length_fn=...)``: the predicted tokens (targets other
    than -100) when the targets are per token (language models), else the examples."""
    if isinstance(batch, dict) and batch.get("y") is not None and batch["y"].dim() == 2:
        return int((batch["y"] != -100).sum())
    return batch_size(batch)


class FiniteValidation(Callback):
    """A validation loss that is NaN or infinite (weights driven so far that the outputs overflow, while the
    training loss of the step before was finite) ends the run as a non-finite training loss does, before the
    checkpoint callbacks see it: Lightning's EarlyStopping stopped such a run silently (exit status 0) and its
    ModelCheckpoint had saved that validation's weights as the best (trial 22). With ``model.nonfinite_loss
    skip`` it is said and the run goes on. The CLI adds it to every run; Lightning runs checkpoint callbacks
    after the others."""

    def on_validation_end(self, trainer, pl_module) -> None:
        # fitting only (validate reports what a checkpoint gives): the same on every process
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking
        if not fitting or "val/loss" not in trainer.callback_metrics:
            return
        loss = trainer.callback_metrics["val/loss"]
        # a language model's split that scored no token has a NaN loss by design, said by the task
        bad = not bool(torch.isfinite(loss)) and not getattr(pl_module, "nothing_scored", False)
        if trainer.world_size > 1:  # every process stops, or none: each takes part before any returns
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        message = (f"validation loss is {float(loss)} after step {trainer.global_step} (epoch "
                   f"{trainer.current_epoch}): the model's outputs are no longer finite")  # fmt: skip
        if getattr(pl_module.hparams, "nonfinite_loss", "stop") == "skip":
            pl_module.print(f"warning: {message}; going on (model.nonfinite_loss=skip)")
            return
        raise NonFiniteLossError(
            f"{message}; stopped before this validation's checkpoint (earlier ones stand; a lower learning rate or "
            "trainer.gradient_clip_val may help)"
        )


class SayEarlyStop(Callback):
    """One line when early stopping ended the fit before its bounds (Lightning says why only in its EarlyStopping's
    state, while it prints a line for max_steps and max_epochs): a run asked for 300 steps ended at 160 without a
    word (trial 25). The CLI adds it to every run."""

    def on_train_start(self, trainer, pl_module) -> None:
        stopper = trainer.early_stopping_callback
        # after a resume's restore: a reason kept in the checkpoint is not this fit's
        self._before = getattr(stopper, "stopping_reason_message", None)

    def on_train_end(self, trainer, pl_module) -> None:
        stopper = trainer.early_stopping_callback
        said = getattr(stopper, "stopping_reason_message", None)
        steps, epochs = trainer.max_steps, trainer.max_epochs
        bound = (steps != -1 and trainer.global_step >= steps) or (
            epochs not in (None, -1) and trainer.current_epoch >= epochs
        )  # reached anyway (min_epochs kept it going; it fired at the last epoch): Lightning says that bound
        if said and said != getattr(self, "_before", None) and not bound and trainer.is_global_zero:
            bounds = [
                f"{k} {v}" for k, v in (("max_steps", steps), ("max_epochs", epochs)) if v not in (None, -1)
            ]
            print(f"early stopping ended the run at step {trainer.global_step} (epoch {stopper.stopped_epoch}"
                  f"{', of ' + ' and '.join(bounds) if bounds else ''}): {said}")  # fmt: skip


class FlopsBudget(Callback):
    """Train for a number of training FLOPs instead of epochs (a comparison matched by compute): at the start of
    fit, one training batch's forward and backward FLOPs are counted (``FlopCounterMode``, by the task's
    ``measure_flops``) and ``max_steps`` becomes the budget over the FLOPs of an optimizer step (all
    processes, gradient accumulation included); epochs no longer limit the run. The learning-rate schedule then
    spans those steps.

    A step's cost can change as the run goes (ACT learning to halt, a frozen backbone's cached features): each
    time the task counts again (``flops_tally``, at every epoch's first batch) the steps left become what the
    budget has left over that latest cost, so the run spends the budget, not the first batch's estimate of it.
    The schedule keeps the first estimate's length."""

    def __init__(self, flops: float, where: str = ""):
        """``where``: what the messages start with (compare's comparison file and row)."""
        if not flops > 0:
            raise ValueError(f"budget_flops: {flops} is not a positive number of FLOPs")
        self.flops, self.where = flops, where
        self.steps: int | None = None
        self.flops_per_step: float | None = None
        self._step_seen, self._pending = 0, 0  # set again as training starts (on_train_start)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.datamodule is None:
            raise ConfigError(
                "budget_flops needs the data as a LightningDataModule (to count a training batch)"
            )
        batch = next(iter(trainer.datamodule.train_dataloader()))  # a fresh loader: the fit's is its own
        # What the training step will see (one-hot DNA, image dicts): the datamodule's batch hooks, on the CPU,
        # where the model still is at this point.
        batch = pl_module._on_before_batch_transfer(batch)
        batch = pl_module._apply_batch_transfer_handler(batch, device=torch.device("cpu"))
        per_batch = float(pl_module.measure_flops(batch)["train_per_batch"])
        # Each process counted its own first batch (lengths differ): all take the largest, so all stop together.
        per_batch = float(
            trainer.strategy.reduce(torch.tensor(per_batch, dtype=torch.float64), reduce_op="max")
        )
        self.flops_per_step = per_batch * trainer.world_size * trainer.accumulate_grad_batches
        self.steps = int(self.flops // self.flops_per_step)
        if self.steps < 1:
            raise ConfigError(
                f"{self.where}budget_flops: {self.flops:.3g} is less than one optimizer step of this model "
                f"({self.flops_per_step:.3g} FLOPs); give at least that"
            )
        bound = trainer.max_steps
        trainer.fit_loop.epoch_loop.max_steps = self.steps
        trainer.fit_loop.max_epochs = -1
        if trainer.is_global_zero:
            print(f"{self.where}budget_flops {self.flops:.3g}: {self.steps} steps of {self.flops_per_step:.3g} "
                  "training FLOPs (an optimizer step's, counted on a training batch)")  # fmt: skip
            if bound != -1 and not self.where:  # compare says a config's bound and refuses a command line's
                rank_zero_warn(
                    f"trainer.max_steps: {bound} gives way to the FlopsBudget callback's {self.flops:.3g} FLOPs "
                    f"({self.steps} steps); give one of them",
                    stacklevel=2,
                )

    def on_fit_start(self, trainer, pl_module) -> None:
        # The run's saved config (written at setup, by LightningCLI's callback, which may come after this one)
        # keeps the configs' bound, which the budget replaced: said in it, so that a `fit --config` of it is not
        # taken for the same run (a resumed run's note is there already).
        saved = Path(trainer.log_dir or ".") / "config.yaml"  # every rank asks (a broadcast), rank 0 writes
        note = "# budget_flops "
        if trainer.is_global_zero and saved.is_file() and note not in saved.read_text():
            with open(saved, "a") as f:
                f.write(f"{note}{self.flops:.3g}: this run's steps came from the budget ({self.steps} at the "
                        "start, re-estimated each epoch), not from trainer.max_steps or max_epochs above\n")  # fmt: skip

    def on_train_start(self, trainer, pl_module) -> None:
        self._step_seen, self._pending = trainer.global_step, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the micro-batches of the optimizer step under way (gradient accumulation): none, where this one stepped
        self._pending = 0 if trainer.global_step != self._step_seen else self._pending + 1
        self._step_seen = trainer.global_step
        tally = getattr(pl_module, "flops_tally", None)
        if (
            tally is None
            or not tally.complete
            or not tally.segments
            or tally.segments[-1][0] != tally.batches - 1
        ):
            return  # no count at this batch (only an epoch's first is counted)
        # Every process counted its own batch: all take the largest figures, so all stop together.
        spent, per_batch = trainer.strategy.reduce(
            torch.tensor([tally.total(), tally.segments[-1][1]], dtype=torch.float64), reduce_op="max"
        ).tolist()
        spent *= trainer.world_size
        per_step = per_batch * trainer.world_size * trainer.accumulate_grad_batches
        self.flops_per_step = per_step
        # the step under way counts whole: its micro-batches spent so far are given back (trial 31: with 2 to a
        # step, the first batch's count was charged as spent and one step of the 2 announced went)
        spent -= self._pending * per_batch * trainer.world_size
        self.steps = trainer.global_step + max(0, int((self.flops - spent) // per_step))
        trainer.fit_loop.epoch_loop.max_steps = self.steps


class PeakMemory(Callback):
    """Peak memory of a fit, which Lightning's ``DeviceStatsMonitor`` logs per step but does not keep: CUDA's
    peak allocated, or on the CPU the peak resident set size of this process (sampled every training batch).
    Kept in checkpoints, so a resumed run reports the peak of all its parts."""

    def __init__(self):
        self._process = psutil.Process()
        self._before = 0.0
        self._peak_bytes = 0
        self._device = None

    @property
    def peak_mb(self) -> float:
        now = 0.0
        if self._device is not None and self._device.type == "cuda":
            now = torch.cuda.max_memory_allocated(self._device) / 2**20
        elif self._device is not None:
            now = self._peak_bytes / 2**20
        return max(self._before, now)

    @property
    def kind(self) -> str:
        """What ``peak_mb`` measures: ``cuda`` (peak allocated) or ``process`` (the process's resident memory)."""
        return "cuda" if self._device is not None and self._device.type == "cuda" else "process"

    def state_dict(self) -> dict:
        return {"peak_mb": self.peak_mb}

    def load_state_dict(self, state_dict: dict) -> None:
        self._before = float(state_dict.get("peak_mb", 0.0))

    def on_fit_start(self, trainer, pl_module) -> None:
        self._device = pl_module.device
        self._peak_bytes = self._process.memory_info().rss
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._device.type != "cuda":
            self._peak_bytes = max(self._peak_bytes, self._process.memory_info().rss)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs as TSV: one row per input sequence, in input order (numbers, or the source and
    the text a sequence-to-sequence model wrote). A value holding a tab, a line break or a double quote is
    quoted as ``csv`` and pandas read it back (``"a""b"``); every other value is written as it is."""

    def __init__(self, output: str | None = None):
        """
        Args:
            output: File to write. Empty: ``predictions.tsv`` in the run's log folder.
        """
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        # every rank asks for the log folder (a broadcast), whichever writes
        path = Path(self.output or Path(trainer.log_dir or ".") / "predictions.tsv")
        index = [i for batch in batch_indices[0] for i in batch] if batch_indices else []
        table = _table(trainer, predictions, index) if predictions else None
        if trainer.world_size > 1:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):  # no process group: a file per process
                path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
            else:  # each process predicted its share of the rows: rank 0 writes them all, in input order
                if predictions and not index:  # rows without their dataset index could not be merged
                    raise RuntimeError("predict under several processes: the batches' indices were not kept")
                shares: list | None = [None] * trainer.world_size if trainer.is_global_zero else None
                dist.gather_object(table, shares, dst=0)
                if not trainer.is_global_zero:
                    return
                shares = [t for t in shares if t is not None]
                rows = {row[0]: row for _, share in shares for row in share}  # by index: each row once
                table = (shares[0][0], [rows[i] for i in sorted(rows)]) if shares else None
        if table is None:
            return
        header, rows = table
        write_atomic(path, _tsv([header, *rows]))
        print(f"predictions: {path}")


def _table(trainer, predictions: list, index: list[int]) -> tuple[list[str], list[list]]:
    """``predict``'s outputs as a header and rows (each starting with its index), in input order: the source and
    the text a sequence-to-sequence model wrote, or numbers (class probabilities with the most probable class,
    or a regression's prediction), beside the columns that tie each row to its input record."""
    if isinstance(predictions[0], list):  # text a model wrote (seq2seq): (source, output)
        pairs = [p for batch in predictions for p in batch]
        rows = sorted(zip(index or range(len(pairs)), pairs, strict=True))
        keys = _prediction_keys(trainer, ["index", "source", "prediction"])
        before = [k for k in keys if k != "target"]  # the row's place, then source, target, prediction
        after = ["target"] if "target" in keys else []
        return ["index", *before, "source", *after, "prediction"], [
            [i, *(keys[k][i] for k in before), s, *(keys[k][i] for k in after), t] for i, (s, t) in rows
        ]
    values = torch.cat([p.reshape(len(p), -1) for p in predictions]).cpu()
    # class probabilities: a column per class, named by the data's class names when it has them, and the
    # most probable class
    names = list(getattr(trainer.datamodule, "labels", None) or [])
    if len(names) != values.shape[1]:
        names = [str(k) for k in range(values.shape[1])]
    classes = values.shape[1] > 1
    columns = ["predicted", *(f"p_{n}" for n in names)] if classes else ["prediction"]
    keys = _prediction_keys(trainer, ["index", *columns])
    rows = sorted(zip(index or range(len(values)), values.tolist(), strict=True))
    return ["index", *keys, *columns], [
        [i, *(v[i] for v in keys.values())]
        + ([names[max(range(len(row)), key=row.__getitem__)]] if classes else [])
        + [f"{v:.6g}" for v in row]
        for i, row in rows
    ]


def _prediction_keys(trainer, taken: list[str]) -> dict[str, list]:
    """The columns the datamodule gives (``prediction_keys``: (name, values) pairs) to tie each predicted row to
    its input record (its line, an id column), each named apart from the others and the writer's own ``taken``
    ones (underscores before a name that is taken)."""
    give = getattr(trainer.datamodule, "prediction_keys", None)
    keys = give() if callable(give) else []
    named = {}
    for name, values in keys:
        while name in taken or name in named:
            name = "_" + name
        named[name] = values
    return named


def _tsv(rows: list[list]) -> str:
    """Rows as TSV (None as an empty field): a value holding a tab, a line break (``\\n`` or ``\\r``) or a double
    quote is quoted as ``csv`` quotes it (quotes doubled), so that ``csv`` and pandas read it back whole; Python's
    ``csv.writer`` with ``\\n`` line ends leaves a lone ``\\r`` unquoted, which splits the row."""

    def cell(value) -> str:
        text = "" if value is None else str(value)
        return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in '\t\n\r"') else text

    return "".join("\t".join(map(cell, row)) + "\n" for row in rows)


def constant_factor(epoch: int) -> float:
    """For ``BackboneFinetuning(lambda_func=...)``: keep the backbone's learning rate where it starts."""
    return 1.0


class BackboneFinetuning(callbacks.BackboneFinetuning):
    """Lightning's ``BackboneFinetuning`` (frozen backbone for ``unfreeze_backbone_at_epoch`` epochs, then
    trained with its own learning rate), with frozen norm layers that stay consistent.

    With ``train_bn=False`` the backbone's norm layers are frozen as well and kept in eval mode while frozen:
    they normalise with their stored (e.g. ImageNet) statistics in training as in validation; once unfrozen,
    they train with the rest. Lightning 2.6
    ignores ``train_bn`` when freezing (its norm layers stay trainable), and its frozen norm layers would
    normalise with batch statistics in training but stored ones in validation. ``train_bn=True`` (the
    default, as fastai) lets the norm layers train and update their statistics while the rest is frozen.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # freezes, before the strategy wraps the model
        # DDP synchronises the gradients of the parameters that required them when it wrapped the model: not
        # the backbone frozen now (Lightning issue #20340). Once unfrozen, their gradients are averaged here.
        self._outside_ddp = [p for p in pl_module.parameters() if not p.requires_grad]
        if stage == "fit" and trainer.world_size > 1 and not isinstance(trainer.strategy, DDPStrategy):
            raise ConfigError(
                f"trainer.strategy: BackboneFinetuning under {type(trainer.strategy).__name__} would leave the "
                "unfrozen backbone different on each process; use strategy ddp"
            )

    def on_after_backward(self, trainer, pl_module) -> None:
        """After every backward, as DDP's own buckets are: before a mixed-precision scaler unscales and checks
        the gradients for inf (so every rank skips the same steps), and on each accumulated micro-batch
        (averaging is linear: the parts averaged before stay equal)."""
        if trainer.world_size == 1:
            return
        grads = [p.grad for p in self._outside_ddp if p.requires_grad and p.grad is not None]
        if grads:  # the same parameters on every rank: each trains the same graph
            mean = trainer.strategy.reduce(torch.cat([g.reshape(-1) for g in grads]), reduce_op="mean")
            for grad, part in zip(grads, mean.split([g.numel() for g in grads]), strict=True):
                grad.copy_(part.view_as(grad))

    def freeze_before_training(self, pl_module) -> None:
        if getattr(pl_module.net, "freeze_backbone", False):
            raise ConfigError(
                "trainer.callbacks: BackboneFinetuning unfreezes a backbone that model.net.init_args."
                "freeze_backbone keeps frozen; use one of the two"
            )
        self.freeze(pl_module.backbone, train_bn=True)
        if not self.train_bn:
            for norm in self._norms(pl_module):
                for p in norm.parameters(recurse=False):
                    p.requires_grad = False

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        if epoch > self.unfreeze_backbone_at_epoch:
            # Resumed after the unfreezing epoch: setup() froze the backbone again and the restored optimizer
            # does not make it trainable (Lightning issue #21901). Idempotent in an uninterrupted run.
            self.make_trainable(pl_module.backbone)
        if getattr(pl_module.hparams, "layer_decay", None) is not None:
            self._finetune_by_layer(pl_module, epoch, optimizer)
            return
        frozen_norms, self.train_bn = self.train_bn, True  # unfreezing trains all of it, norm layers included
        try:
            super().finetune_function(pl_module, epoch, optimizer)
        finally:
            self.train_bn = frozen_norms

    def _finetune_by_layer(self, pl_module, epoch: int, optimizer) -> None:
        """With the task's ``layer_decay``: the unfrozen backbone joins as timm's layer-wise groups, each at the
        backbone's rate (``backbone_initial_lr``, or the head's current rate times ``backbone_initial_ratio_lr``)
        times its layer's scale; in later epochs every one of those groups follows ``lambda_func`` (and
        ``should_align`` caps it at the head's rate), as Lightning's single backbone group does."""
        from lit_models.optim import parameter_groups

        # The head's rate: the highest of the groups the optimizer began with (layer decay scales the rest
        # below it; group 0 may be a stem's norm layer that stayed trainable)
        head_lr = max(g["lr"] for g in optimizer.param_groups if not g.get("backbone"))
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = self.backbone_initial_lr
            if backbone_lr is None:
                backbone_lr = head_lr * self.backbone_initial_ratio_lr
            self.make_trainable(pl_module.backbone)
            in_backbone = {id(p) for p in pl_module.backbone.parameters()}
            in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
            for group in parameter_groups(pl_module.net, pl_module.hparams.layer_decay):
                params = [p for p in group["params"] if id(p) in in_backbone and id(p) not in in_optimizer]
                if params:
                    extra = {k: v for k, v in group.items() if k not in ("params", "lr_scale")}
                    lr = backbone_lr * group.get("lr_scale", 1.0)
                    optimizer.add_param_group({**extra, "params": params, "lr": lr, "backbone": True})
            self.previous_backbone_lr = backbone_lr
        elif epoch > self.unfreeze_backbone_at_epoch:
            factor = self.lambda_func(epoch + 1)
            for group in (g for g in optimizer.param_groups if g.get("backbone")):
                group["lr"] = (
                    min(group["lr"] * factor, head_lr) if self.should_align else group["lr"] * factor
                )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Every batch: Lightning records each module's mode before a validation and restores it after, so the
        # norm layers put in eval mode while frozen came back in eval mode after the unfreezing too (trial 29:
        # their statistics never updated)
        if not self.train_bn:
            frozen = trainer.current_epoch < self.unfreeze_backbone_at_epoch
            for norm in self._norms(pl_module):
                norm.train(not frozen)

    @staticmethod
    def _norms(pl_module) -> list[torch.nn.Module]:
        return [
            m for m in pl_module.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
