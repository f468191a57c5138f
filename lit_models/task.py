"""``Task``: what every task LightningModule shares, so that a task file holds only its loss and metrics.

Shared here: the architecture as a constructor argument (any ``nn.Module``), the optimizer and learning-rate
schedule as LightningCLI callables over the task's parameter groups, the pre-training check for parameters
that get no gradient, the non-finite-loss guard, parameter counts, ``torch.compile``, and the backbone a
fine-tuning callback freezes. A task subclass implements ``compute_loss(batch) -> (loss, outputs)``.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import nullcontext
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer
from torch import nn

from archbench.checkpoint_files import check_checkpoint
from archbench.errors import ConfigError, first_line
from lit_models.act import AdaptiveDepth, PonderSteps
from lit_models.checks import (
    NonFiniteLossError,
    Probe,
    UnusedParametersError,
    probe,
    state_dict_mismatch,
    unused_parameters_message,
)
from lit_models.flops import FlopsTally, flop_counter
from lit_models.moe import ExpertUsage, MoE
from lit_models.optim import WarmupCosineLR, parameter_groups


def _only_length_sized(own: dict, saved: dict) -> bool:
    """Whether the only tensors that differ are ones sized by the sequence length, of another shape: learned
    positions (``.pos``) and a flatten-pooling head's weight."""
    differ = [
        k
        for k in own.keys() | saved.keys()
        if k not in own or k not in saved or own[k].shape != saved[k].shape
    ]
    return bool(differ) and all(
        k in own and k in saved and (k.endswith(".pos") or (".head." in f".{k}" and k.endswith(".weight")))
        for k in differ
    )


def _check_optimizer(optimizer, lr_scheduler) -> None:
    """The optimizer and schedule built once on a stand-in parameter, when the task is built: a value torch
    refuses (a negative learning rate, betas outside [0, 1)) stops the run before a logger writes, in one line,
    rather than as a traceback from ``configure_optimizers`` once the run folder exists."""
    try:
        built = optimizer(
            [nn.Parameter(torch.zeros(2, 2))]
        )  # a matrix: optimizers for weight matrices take it
    except ValueError as err:
        raise ConfigError(f"model.optimizer: {first_line(err)}") from None
    if lr_scheduler is None:
        return
    try:
        try:
            lr_scheduler(built, total_steps=1_000_000)  # long enough for any warm-up a schedule checks
        except TypeError as err:
            if "total_steps" not in str(err):
                raise
            lr_scheduler(built)
    except ValueError as err:
        raise ConfigError(f"model.lr_scheduler: {first_line(err)}") from None


def _data_apart(saved: dict, data: L.LightningDataModule | None) -> str:
    """Where a checkpoint's data and this run's differ, for a shape mismatch (a vocabulary or an input size is
    the data's doing): ``; trained on data.train_path a.txt, this run's is b.txt``; ``""`` where none differ."""
    ours = dict(getattr(data, "hparams", None) or {})
    keys = ("task", "train_path", "dataset", "root", "tokenizer", "tokenizer_vocab_size", "seq_len")
    apart = [f"data.{k} {saved[k]!r}, this run's {ours[k]!r}" for k in keys
             if k in saved and k in ours and not same_setting(k, saved[k], ours[k])]  # fmt: skip
    return f"; the checkpoint was trained on other data ({'; '.join(apart)})" if apart else ""


def same_setting(key: str, a, b) -> bool:
    """Two values of a data setting: a path (data/x.csv) and its absolute form are one file."""
    if (key.endswith("_path") or key in ("root", "tokenizer")) and isinstance(a, str) and isinstance(b, str):
        return a == b or os.path.abspath(a) == os.path.abspath(b)
    return a == b


def _token_ids(saved: str) -> dict[str, int] | None:
    """Token -> id of a tokenizer as a datamodule's checkpoint state keeps it (the text data's ``tokenizers``
    JSON, the language-model data's ``{"kind": "char" | "tokenizers", ...}``); None where it cannot be read."""
    try:
        parsed = json.loads(saved)
        if isinstance(parsed, dict) and parsed.get("kind") == "char":
            return {c: i for i, c in enumerate(parsed["chars"])}
        if isinstance(parsed, dict) and parsed.get("kind") == "tokenizers":
            saved = parsed["tokenizer"]
        return Tokenizer.from_str(saved).get_vocab(with_added_tokens=True)
    except Exception:  # noqa: BLE001 - not a tokenizer this can read: the names are compared instead
        return None


def _saved_tokens(checkpoint: dict) -> dict[str, int] | None:
    """The token ids of the data a checkpoint was trained on: its datamodule's state (Lightning keeps it under
    the class's name), where it saved its tokenizer."""
    states = [v for k, v in checkpoint.items() if isinstance(v, dict) and isinstance(v.get("tokenizer"), str)
              and not k.endswith("hyper_parameters")]  # fmt: skip
    return _token_ids(states[0]["tokenizer"]) if states else None


def _refuse_other_tokens(option: str, path: str, checkpoint: dict, saved_data: dict, data) -> None:
    """A ConfigError where ``init_from``'s checkpoint read its data with other token ids than ``data`` does. The
    vocabularies are compared where both are known (one tokenizer folder given by two paths is the same, two BPEs
    trained on other files are not); else the tokenizers' names, a path and its absolute form being one."""
    saved, ours = saved_data["tokenizer"], data.hparams.tokenizer
    state = getattr(data, "state_dict", None)
    mine = _token_ids(state().get("tokenizer", "")) if callable(state) else None
    theirs = _saved_tokens(checkpoint) if mine is not None else None
    if mine is not None and theirs is not None:
        if mine == theirs:
            return
        by_id, mine_by_id = {i: t for t, i in theirs.items()}, {i: t for t, i in mine.items()}
        # trial 33: "30522 of their token ids mean other tokens" of a 68-character vocabulary: the ids both have
        shared = set(by_id) & set(mine_by_id)
        differ = sorted(i for i in shared if by_id[i] != mine_by_id[i])
        first = (f"id {differ[0]} is {by_id[differ[0]]!r} there, {mine_by_id[differ[0]]!r} here"
                 if differ else "one id holds two tokens")  # fmt: skip
        sizes = f"; {len(theirs):,} tokens there, {len(mine):,} here" if len(theirs) != len(mine) else ""
        if differ:
            meaning = (
                f"{len(differ):,} of the {len(shared):,} ids both have mean other tokens ({first}{sizes})"
            )
        elif sizes:  # one vocabulary extends the other: the ids beyond the smaller one mean nothing there
            meaning = f"one has tokens the other lacks ({sizes[2:]}; the {len(shared):,} ids both have agree)"
        else:
            meaning = f"their token ids mean other tokens ({first})"
        raise ConfigError(
            f"{option}: {path} was trained on data tokenized by {saved!r}, this data by {ours!r} (data.tokenizer), "
            f"and {meaning}: give the checkpoint's tokenizer (a trained one: its run folder's tokenizer.json)"
            + _data_apart(saved_data, data)
        )
    if not same_setting("tokenizer", saved, ours):
        raise ConfigError(
            f"{option}: {path} was trained on data tokenized by {saved!r}, this data uses {ours!r} "
            "(data.tokenizer): token ids would mean other tokens"
        )


class Task(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = WarmupCosineLR,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        layer_decay: float | None = None,
        unused_parameters: Literal["error", "warn", "ignore"] = "error",
        nonfinite_loss: Literal["stop", "skip"] = "stop",
        compile: bool = False,
        init_from: str | None = None,
    ):
        """
        Args:
            net: The architecture, ``forward(x, lengths=None) -> (B, outputs)``.
            optimizer: Any torch optimizer, e.g. ``--model.optimizer torch.optim.SGD --model.optimizer.momentum
                0.9``. Default AdamW (lr 1e-3, weight decay 0.01). Its ``weight_decay`` applies to weight matrices
                only, never to biases, norms or position embeddings.
            lr_scheduler: Any torch schedule (``torch.optim.lr_scheduler.StepLR``, ...), or null for a constant
                rate. Default: linear warm-up over 5% of the steps, then cosine decay to zero. A schedule with a
                ``total_steps`` argument (``WarmupCosineLR``, ``OneCycleLR``) gets the run's optimizer steps.
            lr_scheduler_interval: Step the schedule after every optimizer ``step`` or every ``epoch`` (StepLR's
                usual unit).
            layer_decay: Layer-wise learning-rate decay for fine-tuning (e.g. 0.75): the head trains at the full
                rate, each layer below at ``layer_decay`` times the one above (timm's parameter groups; for timm
                models and our ViT and ResNet).
            unused_parameters: At the first training step, one extra forward and backward finds trainable
                parameters that get no gradient: ``error`` stops the run, ``warn`` warns, ``ignore`` skips it.
            nonfinite_loss: A NaN or infinite training loss: ``stop`` ends the run before that step's update,
                naming the step and batch; ``skip`` drops the batch (no update) and counts it in
                ``train/skipped_batches``. Under DDP the decision is taken together, so processes never diverge.
            compile: ``torch.compile`` the net (``compile_net``: ``nn.Module.compile``, or the net with the task's
                loss for the language models; parameter names and checkpoints unchanged).
            init_from: A checkpoint trained here whose net weights start this fit (e.g. the encoder of a masked
                LM, ``MaskedLanguageModelTask``, under a text classifier of the same shape). Every tensor must
                match by name and shape except the head's, which starts fresh when its shape differs; a
                tokenizer other than the checkpoint's data used stops the run. Resuming (``--ckpt_path``)
                restores the run's own weights over these.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.net = net
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        _check_optimizer(optimizer, lr_scheduler)
        self.skipped_batches = 0
        self._checked_parameters = False
        # Parts of the net with losses of their own (MoE balance, ACT ponder cost) and statistics to log.
        self._aux_modules = [
            m for m in net.modules() if hasattr(m, "aux_losses") and hasattr(m, "reset_statistics")
        ]
        self._moe = [m for m in net.modules() if isinstance(m, MoE)]
        self._act = [m for m in net.modules() if isinstance(m, AdaptiveDepth) and m.halt is not None]
        for stage in ("val", "test"):
            if self._moe:
                experts = max(m.options.experts for m in self._moe)
                setattr(self, f"{stage}_experts", ExpertUsage(len(self._moe), experts))
            if self._act:
                setattr(self, f"{stage}_ponder", PonderSteps(max(m.max_steps for m in self._act)))
        # measured on the fit's first training batch (``measure_flops``)
        self.flops: dict[str, float] | None = None
        self._flops_epoch: int | None = None  # the epoch of this fit last measured (None: none yet)
        self.flops_tally = FlopsTally()  # training FLOPs, measured again at every epoch's first batch
        self._compiled: dict = {}  # torch.compile'd functions of this module (``compile_net``), never pickled
        self._checked_init: tuple | None = None  # (init_from, its checked weights): check_init_from's
        self.test_flops: dict[str, float] | None = None  # the tested model's forward, at the first test batch

    # --- what a task provides ---------------------------------------------------------------------------

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean loss and the net's outputs."""
        raise NotImplementedError

    @staticmethod
    def batch_size(batch: dict) -> int:
        return len(batch["y"])

    # --- shared -----------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        resuming = (
            self._trainer is not None and self._trainer.ckpt_path
        )  # the run's own weights replace these
        if stage == "fit" and self.hparams.init_from and not resuming:
            self._init_from(self.hparams.init_from)
        if self.hparams.compile:
            self.compile_net()
        self.check_data_once(self._trainer.datamodule if self._trainer is not None else None, stage)

    def check_data_once(self, data: L.LightningDataModule | None, stage: str) -> None:
        """``check_data``, once per datamodule and stage: the command line checks before the trainer starts (so
        a mistake stops it with nothing written), and the trainer's ``setup`` would check, and warn, again."""
        key = (id(data), stage)
        if getattr(self, "_data_checked", None) != key:
            self.check_data(data, stage)
            self._data_checked = key

    def check_data(self, data: L.LightningDataModule | None, stage: str) -> None:
        """What this model cannot read in the data of ``stage`` (a sequence longer than its positions), raised
        before the first step. The command line calls it before the loggers start, so nothing is written. Here:
        the net's own ``check_data`` where it has one (a pretrained encoder's tokenizer)."""
        check = getattr(self.net, "check_data", None)
        if callable(check) and data is not None:
            check(data)

    def compile_net(self) -> None:
        """``compile: true``: the net through ``nn.Module.compile`` (parameter names and checkpoints unchanged).
        A task whose loss over a large output gains from being fused with the net compiles both instead
        (``LanguageModelTask``)."""
        self.net.compile()

    def _init_from(self, path: str) -> None:
        """Load the net weights of checkpoint ``path`` (see ``init_from``), the head's only where shapes agree."""
        checked, self._checked_init = self._checked_init, None
        if checked is not None and checked[0] == path:  # the command line's check read it already
            state, fresh_head, left_out = checked[1]
        else:
            state, fresh_head, left_out = self.init_state(path, getattr(self._trainer, "datamodule", None))
        self.net.load_state_dict(state, strict=not fresh_head)
        shown = ", ".join(left_out[:4]) + (f" and {len(left_out) - 4} more" if len(left_out) > 4 else "")
        rank_zero_info(
            f"model.init_args.init_from: {len(state)} tensors from {path}"
            + ("; the head starts fresh" if fresh_head else "")
            + (f" (the checkpoint's head left out: {shown})" if left_out else "")
        )

    def check_init_from(self, data: L.LightningDataModule | None) -> None:
        """``init_from``'s weights checked against this net and ``data`` now (the command line asks before the
        loggers start); the fit's setup then loads them without reading the checkpoint again."""
        path = self.hparams.init_from
        self._checked_init = (path, self.init_state(path, data))

    def init_state(self, path: str, data: L.LightningDataModule | None) -> tuple[dict, bool, list[str]]:
        """The net weights ``init_from`` loads from checkpoint ``path``, whether the head starts fresh and the
        checkpoint's head tensors left out for it (a masked LM's decoder, another class count's classifier), or a
        ConfigError saying why they cannot start this net on ``data`` (the command line asks before the loggers
        start, so a wrong checkpoint leaves nothing written)."""
        option = "model.init_args.init_from"
        checkpoint = check_checkpoint(path, option)
        if "state_dict" not in checkpoint:
            raise ConfigError(
                f"{option}: {path} is a sharded (FSDP) checkpoint folder; give a single-file checkpoint"
            )
        saved_data = checkpoint.get("datamodule_hyper_parameters") or {}
        ours = getattr(getattr(data, "hparams", None), "tokenizer", None)
        if saved_data.get("tokenizer") and ours:
            _refuse_other_tokens(option, path, checkpoint, saved_data, data)
        state = {
            k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")
        }
        own = self.net.state_dict()
        # the classifier's tensors: "head." in the project's nets, the net's own names where it says them
        # (a ResNet's fc, a timm model's classifier)
        heads = tuple(getattr(self.net, "head_prefixes", ("head.",)))
        head = [k for k in state if k.startswith(heads) and (k not in own or own[k].shape != state[k].shape)]
        head += [k for k in own if k.startswith(heads) and k not in state]
        dropped = []
        if head:  # a new head: all of it fresh, none of the saved one
            dropped = [k for k in state if k.startswith(heads)]
            state = {k: v for k, v in state.items() if not k.startswith(heads)}
        wrong = [f"{k} {tuple(v.shape)} here, {tuple(state[k].shape)} saved" for k, v in own.items()
                 if k in state and v.shape != state[k].shape]  # fmt: skip
        missing = [k for k in own if k not in state and not (head and k.startswith(heads))]
        unexpected = [k for k in state if k not in own]
        if wrong or missing or unexpected:
            problems = [f"shapes differ: {', '.join(wrong[:3])}" if wrong else "",
                        f"not in the checkpoint: {', '.join(missing[:3])}" if missing else "",
                        f"not in this net: {', '.join(unexpected[:3])}" if unexpected else ""]  # fmt: skip
            raise ConfigError(
                f"{option}: {path} does not fit model.net ({type(self.net).__name__}): "
                + "; ".join(p for p in problems if p)
                + (_data_apart(saved_data, data) if wrong else "")
            )
        return state, bool(head), dropped

    def training_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The task's loss plus the net's own training losses (MoE load balance, ACT ponder cost): (the sum,
        the task's loss, the net's losses by name)."""
        self._reset_statistics()
        loss, _ = self.compute_loss(batch)
        aux = {}
        for module in self._aux_modules:
            for name, value in module.aux_losses.items():
                aux[name] = aux[name] + value if name in aux else value
        return (loss + sum(aux.values()) if aux else loss), loss, aux

    def _reset_statistics(self) -> None:
        """Forget what the net's MoE / ACT modules gathered in earlier forwards (they sum over the forwards of
        one step: a shared block applied several times, both strands with reverse-complement averaging)."""
        for module in self._aux_modules:
            module.reset_statistics()

    def _probe(self, batch: dict, count_flops: bool) -> Probe:
        """One traceless forward and backward of ``batch`` (``lit_models.checks.probe``), in the step's own
        precision (autocast), so that it costs what a step costs."""
        trainer = self._trainer  # None outside a fit: no precision context to enter
        context = trainer.precision_plugin.train_step_context() if trainer is not None else nullcontext()
        with context:
            return probe(self, lambda: self.training_loss(batch)[0], count_flops)

    def _keep_flops(self, result: Probe, batch: dict) -> dict[str, float]:
        examples = max(1, self.batch_size(batch))
        flops = {
            "forward_per_batch": result.forward_flops,
            "train_per_batch": result.total_flops,
            "forward_per_example": result.forward_flops / examples,
        }
        if self._flops_epoch is None:  # the fit's first measurement is the model's cost per example
            self.flops = flops
        # for Lightning's ThroughputMonitor (FLOPs/s, MFU): the latest count
        self.flops_per_batch = result.total_flops
        self.flops_tally.measured(result.total_flops)
        self._flops_epoch = self.current_epoch
        return flops

    def measure_flops(self, batch: dict) -> dict[str, float]:
        """Forward and training (forward + backward) FLOPs of one batch, counted by ``FlopCounterMode``, and
        the forward FLOPs per example; also ``flops_per_batch`` for Lightning's ThroughputMonitor."""
        return self._keep_flops(self._probe(batch, count_flops=True), batch)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """At a fit's first batch, one probe does both: counts the step's FLOPs (unless a FLOPs budget did at
        setup) and finds trainable parameters that get no gradient (``unused_parameters``). At the first batch
        of every later epoch the FLOPs are counted again (``flops_tally``): one probe an epoch."""
        check = not self._checked_parameters and self.hparams.unused_parameters != "ignore"
        self._checked_parameters = True
        count = self._flops_epoch != self.current_epoch
        if count or check:
            result = self._probe(batch, count_flops=count)
            if count:
                self._keep_flops(result, batch)
            if check:
                self._check_parameters(result.unused)
        # counted as it starts: a checkpoint a callback saves at this batch's end, which a resume takes as
        # done, includes it
        self.flops_tally.batches += 1

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss, task_loss, aux = self.training_loss(batch)
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # any process's bad loss stops (or skips) every process's step
            finite = not self.trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not finite:
            return self._nonfinite(loss, batch_idx)
        if self._logs_this_step():
            self.log("train/loss", task_loss, prog_bar=True, batch_size=self.batch_size(batch))
            for name, value in aux.items():
                self.log(f"train/{name}", value, batch_size=self.batch_size(batch))
            if self._act:
                steps = torch.stack([m.steps.mean() for m in self._act if m.steps is not None]).mean()
                self.log("train/act/steps", steps, batch_size=self.batch_size(batch))
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the loggers write this step's values (Lightning's rule: every ``log_every_n_steps``-th
        optimizer step). ``self.log`` costs about 1 ms a call on the CPU, 1-2% of a small model's step
        (bench/trainer_overhead.py), and a value logged on the other steps is never written; the progress bar
        shows the last written loss. (Batches skipped as non-finite do not advance ``global_step``, so after one
        the loss is written a step later than the other metrics.)"""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _nonfinite(self, loss: torch.Tensor, batch_idx: int) -> None:
        where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.hparams.nonfinite_loss == "stop":
            value = f"is {loss.item()}" if not torch.isfinite(loss) else "is not finite on another process"
            raise NonFiniteLossError(
                f"training loss {value} at {where}; stopped before the update (model.nonfinite_loss=skip "
                "drops such batches instead; a lower learning rate or trainer.gradient_clip_val may help)"
            )
        self.skipped_batches += 1
        self.log("train/skipped_batches", float(self.skipped_batches), reduce_fx="max")
        return None

    def _check_parameters(self, names: list[str]) -> None:
        """Trainable parameters that got no gradient from the loss on the first batch of this fit."""
        if not names:
            return
        message = unused_parameters_message(names, sum(1 for p in self.parameters() if p.requires_grad))
        if self.hparams.unused_parameters == "error":
            raise UnusedParametersError(message)
        warnings.warn(message, stacklevel=1)

    def on_fit_end(self) -> None:
        self._flops_epoch = None  # ``flops`` stays readable (compare reports it); the next fit measures anew

    def _update_statistics(self, stage: str, batch) -> None:
        if self._moe:
            getattr(self, f"{stage}_experts").update(self._moe)
        if self._act:
            difficulty = batch.get("difficulty") if isinstance(batch, dict) else None
            getattr(self, f"{stage}_ponder").update(self._act, difficulty)

    def log_computed(self, values: dict, **kwargs) -> None:
        """Values a torchmetrics metric computed over a whole split (its states summed across processes), so the
        same on every process: logged synced with their max, which is each value exactly, so that Lightning does
        not warn under DDP that an epoch-level value was not synced."""
        self.log_dict(values, sync_dist=True, reduce_fx="max", **kwargs)

    def _log_statistics(self, stage: str) -> None:
        """Expert usage per MoE layer and ACT's steps per position, over the whole split (all processes)."""
        for kind, prefix in (("experts", "moe"), ("ponder", "act")):
            metric = getattr(self, f"{stage}_{kind}", None)
            if metric is not None:
                self.log_computed({f"{stage}/{prefix}/{k}": v for k, v in metric.compute().items()})
                metric.reset()

    def on_validation_batch_start(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._reset_statistics()

    def on_test_batch_start(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            self.test_flops = self._forward_flops(batch)
        self._reset_statistics()

    def _forward_flops(self, batch: dict) -> dict[str, float]:
        """Forward FLOPs per example of the model as it is (``FlopCounterMode``, no gradient, the RNG restored):
        at test, the trained model's cost, with ACT's learned halting and a feature cache's misses on unseen
        inputs, where the first training batch had the untrained halting unit or a cache still empty."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), flop_counter() as counter:
            self.compute_loss(batch)
        return {"forward_per_example": counter.get_total_flops() / max(1, self.batch_size(batch))}

    def on_validation_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update_statistics("val", batch)

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update_statistics("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_statistics("val")

    def on_test_epoch_end(self) -> None:
        self._log_statistics("test")

    def on_fit_start(self) -> None:
        self._checked_parameters = False
        for logger in self.loggers:
            logger.log_hyperparams(self.parameter_counts())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["flops_tally"] = self.flops_tally.state_dict()
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:  # never a NaN model as "best" or "last"
            raise NonFiniteLossError(
                f"not saving a checkpoint whose weights are not finite: {', '.join(bad[:3])}"
            )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Before Lightning loads the weights (its error is a page of every mismatched tensor): a checkpoint
        # trained with another vocabulary, data or net options is refused in one line.
        state = checkpoint.get("state_dict")  # FSDP's sharded (and full) loads take it out before this hook
        if state is not None:  # load_from_checkpoint has no trainer: "the checkpoint"
            trainer = self._trainer
            where = getattr(trainer, "ckpt_path", None) or "the checkpoint"
            self.refuse_mismatch(
                state,
                where,
                getattr(trainer, "datamodule", None),
                checkpoint.get("datamodule_hyper_parameters"),
            )
        # a checkpoint from before tallies has none: the train FLOPs are then unknown, not a part of them
        self.flops_tally.load_state_dict(checkpoint.get("flops_tally"))

    def refuse_mismatch(
        self,
        state: dict[str, torch.Tensor],
        where: str,
        data=None,
        saved_data: dict | None = None,
        saved_net: str | None = None,
    ) -> None:
        """A checkpoint's weights that do not fit this model, refused in one line; ``data``, the data the model is
        built for, may say why (sequences longer than the checkpoint's training data), as may the checkpoint's
        own data settings ``saved_data`` where they differ (a regression checkpoint given classification data),
        and the net class its run built, ``saved_net``, where it is another."""
        problem = state_dict_mismatch(self, state)
        longer = getattr(data, "longer_than_trained", None)
        if problem and longer and _only_length_sized(self.state_dict(), state):
            # the config is right, the sequences are longer than it learned
            raise ConfigError(
                f"{where} does not fit the model that this config and data build ({problem}): {longer}, and a net "
                "whose weights depend on the length (learned positions, flatten pooling) fits only the lengths it "
                "trained on; cut the sequences to that length, or train a net with positions sinusoidal or rotary "
                "and another pooling"
            )
        if problem:
            apart = _data_apart(dict(saved_data or {}), data)
            # trial 32: which nets, not only the tensors
            theirs, ours = (saved_net or "").rsplit(".", 1)[-1], type(self.net).__name__
            if theirs and theirs != ours:
                apart += f"; its run built the net {theirs}, this config {ours}"
            raise ConfigError(
                f"{where} does not fit the model that this config and data build ({problem}): it was trained "
                f"with another vocabulary, data or net options{apart}; give the config it was trained with"
            )

    def __getstate__(self) -> dict:
        """torch.compile's wrappers hold this module: a copy or a pickle runs eagerly rather than the original's."""
        state = super().__getstate__()
        return {**state, "_compiled": {}}

    def parameter_counts(self) -> dict[str, int]:
        """Parameters, trainable ones, and active ones: what one example runs through (a Mixture of Experts
        uses top_k of its experts per token; the rest count in ``params`` only)."""
        params = sum(p.numel() for p in self.net.parameters())
        return {
            "params": params,
            "params_trainable": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
            "params_active": params - sum(m.inactive_parameters() for m in self._moe),
        }

    def configure_optimizers(self):
        groups = parameter_groups(self.net, self.hparams.layer_decay)
        covered = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in covered]
        if rest:  # a task's own parameters (outside the net): decayed like the net's weights
            groups.append({"params": rest})
        optimizer = self.optimizer(groups)
        for group in optimizer.param_groups:  # before the schedule reads the rates
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.lr_scheduler is None:
            return optimizer
        try:
            scheduler = self.lr_scheduler(optimizer, total_steps=max(1, int(self._stepping_batches())))
        except TypeError as err:
            if "total_steps" not in str(err):
                raise
            scheduler = self.lr_scheduler(optimizer)  # a schedule that does not need the run's length
        config = {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.update(monitor="val/loss", interval="epoch")
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _stepping_batches(self) -> float:
        """``trainer.estimated_stepping_batches`` without its side effect. Asked before a checkpoint is restored,
        it builds the training loader early, and Lightning then never gives the loader its saved position (a
        mid-epoch resume would restart the epoch's data order; Lightning issue #20550). The early loader is
        dropped (a private attribute: no public way exists) and Lightning builds it again after the restore."""
        fit_loop = self.trainer.fit_loop
        built_before = fit_loop._combined_loader is not None
        total = self.trainer.estimated_stepping_batches
        if not built_before and fit_loop._combined_loader is not None:
            fit_loop._combined_loader.reset()
            fit_loop._combined_loader = None
        return total

    @property
    def backbone(self) -> nn.Module:
        """Every part of the net but its head, for fine-tuning callbacks (Lightning's ``BackboneFinetuning``
        freezes it, then unfreezes it with its own learning rate)."""
        if hasattr(self.net, "backbone_modules"):
            return nn.ModuleList(self.net.backbone_modules())
        head = next((getattr(self.net, n) for n in ("head", "fc") if hasattr(self.net, n)), None)
        if head is None:
            raise AttributeError(
                f"{type(self.net).__name__} has no head (head or fc) to tell from its backbone"
            )
        return nn.ModuleList(m for m in self.net.children() if m is not head)
