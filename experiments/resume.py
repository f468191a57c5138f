"""Surviving a kill: checkpoints written whole or not at all, and ``fit --ckpt_path last`` continuing the
latest run of the same model in its own run folder, with the same W&B run.

Lightning restores the model, optimizer, LR scheduler, loop position (mid-epoch too: the training loader is
resumable, see ``datamodules.sampling``) and ``ModelCheckpoint`` state from a checkpoint. What it cannot
know is *which* run ``last`` means once a logger versions its folders: a relaunch would open ``version_N+1``
and find nothing. :func:`resume_last` picks the newest ``last.ckpt`` of a run with the same ``model`` (and training data)
config, points the loggers at that run folder and W&B run id (saved in the checkpoint), and resumes it.
"""

from __future__ import annotations

import csv
import inspect
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from archbench.checkpoint_files import check_checkpoint
from archbench.errors import ConfigError
from datamodules.files import atomic_writer, data_fingerprints
from experiments.configs import flatten, import_class
from lit_models.task import same_setting

WANDB_ID_KEY = "wandb_run_id"
RUN_DIR_KEY = "run_dir"
DATA_KEY = "data_fingerprints"  # the training data files' fingerprints, paths resolved


def saved_net(checkpoint: dict, path: str | Path) -> str | None:
    """The net class (``lit_models.DilatedCNN``) that the checkpoint at ``path`` was trained with, from the
    ``config.yaml`` of its run folder (``RUN/checkpoints/last.ckpt``: the checkpoint's hyper-parameters leave the
    net out); None where there is none to read."""
    folder = Path(path).resolve().parent.parent
    if not (folder / "config.yaml").is_file() and Path(checkpoint.get(RUN_DIR_KEY) or "").is_absolute():
        folder = Path(checkpoint[RUN_DIR_KEY])  # a checkpoint moved out of its run folder
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        net = config["model"]["init_args"]["net"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return net.get("class_path") if isinstance(net, dict) else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, fsync, rename: a kill at any moment leaves the
    previous checkpoint whole. (Lightning's own save goes through a temporary file in the system's temp folder,
    which is only a rename when that is on the same filesystem as the run.)"""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        with atomic_writer(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = True):
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


def checkpoint_info(path: str | Path, option: str = "--ckpt_path last", instead: str | None = None) -> dict:
    """The W&B run id, run folder and step kept in a checkpoint (read with mmap: the weights are not loaded). A
    damaged file (a copy cut short, a full disk) is a ConfigError naming it and what to do ``instead`` (default,
    for ``fit --ckpt_path last``: resume from a checkpoint beside it, or start a new run)."""
    try:
        checkpoint = check_checkpoint(path, option)
    except ConfigError as err:
        if "is not a checkpoint or is damaged" not in str(err):
            raise
        if instead is None:
            beside = _newest_first(p for p in Path(path).parent.glob("*.ckpt") if p.name != Path(path).name)
            instead = "leave out --ckpt_path to start a new run" + (
                f", or resume from one beside it with --ckpt_path FILE ({', '.join(p.name for p in beside)})"
                if beside
                else ""
            )
        raise ConfigError(f"{err}; {instead}") from None
    return {k: checkpoint.get(k) for k in (WANDB_ID_KEY, RUN_DIR_KEY, DATA_KEY, "global_step")}


def _newest_first(paths) -> list[Path]:
    return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)


def _newer_hpc_checkpoint(config, run_dir: Path, ckpt: Path) -> Path:
    """Under SLURM, Lightning saves ``hpc_ckpt_N.ckpt`` in the root folder when the job is pre-empted: that is
    newer than the run's ``last.ckpt``; take it when it belongs to this run."""
    root = Path(config.get("trainer", {}).get("default_root_dir") or ".")
    newest = ckpt
    for hpc in root.glob("hpc_ckpt_*.ckpt"):
        if hpc.stat().st_mtime > newest.stat().st_mtime:
            saved = checkpoint_info(hpc, "SLURM's requeue checkpoint", "delete it to resume from last.ckpt")[
                RUN_DIR_KEY
            ]
            if saved and Path(saved).resolve() == run_dir.resolve():
                newest = hpc
    return newest


def logger_entries(config) -> list:
    loggers = config.get("trainer", {}).get("logger")
    if not loggers or loggers is True:
        return []
    return loggers if isinstance(loggers, list) else [loggers]


def named_checkpoint(config, run: dict, name: str) -> Path | None:
    """``last`` or the newest ``best*`` checkpoint of the newest run of this ``run``'s model and data (the run folder of
    the first versioned logger, or ``trainer.default_root_dir`` without a logger); None when there is none."""
    if config.get("trainer", {}).get("logger") is False:
        root = Path(config.get("trainer", {}).get("default_root_dir") or ".")
        run_dir = root if _same_model(root / "config.yaml", run) else None
    else:
        found = find_last_run(config, run)
        run_dir = found[0] if found else None
    if run_dir is None:
        return None
    pattern = "last.ckpt" if name == "last" else "best*.ckpt"
    candidates = sorted((run_dir / "checkpoints").glob(pattern), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


# The task's options that change only how validate / test / predict decode, not what was trained: --ckpt_path last or
# best of an evaluation finds the run whatever they are (trial 28: test --model.beam_width 3 refused its run).
DECODING_ONLY = ("beam_width", "max_decode_length")
# Data options that change what a run is evaluated on or how it is read, not what it trained on: a run is still
# "this run" when they differ (test it on another file, predict on a new one, more loader workers).
EVALUATION_ONLY = ("predict_path", "test_path", "test_size", "num_workers", "batch_size", "global_batch_size",
                   "cache_dir", "test_time_reverse_complement", "checkpoint")  # fmt: skip


def training_files(data_settings) -> dict[str, str]:
    """Fingerprints of the files and folders a run trains and validates on (a data section or a datamodule's
    hyper-parameters; evaluation-only options aside), keyed by resolved path."""
    found = data_fingerprints(data_settings, skip=EVALUATION_ONLY)
    # absolute, not resolved: a link pointed at other data is another file under the name the run read
    return {os.path.abspath(path): mark for path, mark in found.items()}


def _changed(saved: dict[str, str], now: dict[str, str]) -> tuple[list[str], list[str]]:
    """(the paths whose fingerprints differ, those of them known to hold other contents: SHA-256 on both sides,
    where a size, time or folder-listing mark says only that something was touched)."""
    changed = [path for path in sorted(saved.keys() & now.keys()) if saved[path] != now[path]]
    known = [p for p in changed if saved[p].startswith("sha256:") and now[p].startswith("sha256:")]
    return changed, known


def check_same_files(config, ckpt: str, given: str) -> None:
    """A run resumed on a training file changed in place (same path, other contents) would go on with splits
    and an order made from other rows: rows held out before may now be trained on, or the reverse (trial 22:
    ``compare`` refused this, ``fit --ckpt_path last`` did not). Refused for ``last`` where the contents are
    known to differ (the SHA-256 of a file up to ``HASHED_BYTES``, the same on every node that holds a copy);
    said where only a size, a time or a folder's listing differ (a copy, ``touch``, a file added beside the data:
    the contents were not compared), and for a checkpoint the user names (going on with new data on purpose)."""
    saved = checkpoint_info(ckpt).get(DATA_KEY)
    if not saved:  # a checkpoint of an earlier version: nothing to compare
        return
    data = config.get("data")
    changed, known = _changed(saved, training_files(data.as_dict() if hasattr(data, "as_dict") else data))
    if known and given == "last":
        raise ConfigError(
            f"--ckpt_path last: {', '.join(known)} changed since {ckpt} was saved (same path, other contents): the "
            "run's held-out splits and training order were made from the file as it was, so going on would mix "
            "them; put the file back as it was, start a new run (leave out --ckpt_path; --model.init_from CKPT "
            f"starts it from this run's weights), or go on anyway with --ckpt_path {ckpt}"
        )
    if changed:
        how = (
            "changed (other contents)"
            if known
            else "modified (its size, time or listing differ; contents not compared)"
        )
        rank_zero_warn(
            f"--ckpt_path {given}: {', '.join(changed)} {how} since {ckpt} was saved; this fit goes on with the data "
            "as it is now, though the run's held-out splits and order were made from it as it was"
        )


# the settings that decide which rows of a training file are held out (a split given a file holds none out)
HOLD_OUT = ("val_path", "test_path", "val_fraction", "test_fraction", "split_seed")


def _refuse_other_hold_out(hp, saved: dict | None, ckpt: str, stage: str, split: str) -> None:
    """A split drawn from the training file where the checkpoint's run drew another (it had the split in a file
    of its own, so it trained on every row of the training file; another fraction or seed): the rows drawn now
    include rows it trained on (trial 30: test scored 40 trained rows, unsaid, after --ckpt_path best pointed
    to the checkpoint file). Refused; a checkpoint without its data settings (an older version) is not checked."""
    if not isinstance(saved, dict) or not isinstance(saved.get("train_path"), str):
        return
    if not same_setting("train_path", saved["train_path"], hp.get("train_path")):
        return  # another file (an encoded copy, new data): which of its rows were trained on is not known here
    differ = [f"data.{key} {saved.get(key)!r} there, {hp.get(key)!r} here" for key in HOLD_OUT
              if not same_setting(key, saved.get(key), hp.get(key))]  # fmt: skip
    if differ:
        kind = "validation" if split == "val" else "test"
        raise ConfigError(
            f"{stage}: the {kind} split is drawn from data.train_path {hp.get('train_path')}, but {ckpt} held out "
            f"other rows of it ({'; '.join(differ)}), so this split would hold rows the model trained on; give "
            f"the run's own data settings (its config.yaml), or a file of the split's own (data.{split}_path)"
        )


def check_held_out_source(data, checkpoint: dict, ckpt: str, stage: str) -> None:
    """``validate``/``test``/``predict`` of a split held out of the training file (no file of its own): the split
    is drawn again from the file as it is now, so a file whose contents changed since the checkpoint gives
    other rows, some of them trained on (trial 23: test scored 4 rows of the run's training part, unsaid).
    Refused where the contents are known to differ (SHA-256), said where only a size or time does."""
    hp = getattr(data, "hparams", None) or {}
    split = "val" if stage == "validate" else "test"
    if not hp.get("train_path") or hp.get(f"{split}_path") or (stage == "predict" and hp.get("predict_path")):
        return
    _refuse_other_hold_out(hp, checkpoint.get("datamodule_hyper_parameters"), ckpt, stage, split)
    changed, known = _changed(
        checkpoint.get(DATA_KEY) or {}, training_files({"train_path": hp["train_path"]})
    )
    if not changed:
        return
    said = (f"{stage}: the {'validation' if split == 'val' else 'test'} split is held out of data.train_path "
            f"{hp['train_path']}, which changed since {ckpt} was saved")  # fmt: skip
    if known:
        raise ConfigError(
            f"{said} (other contents): drawn again now it would hold other rows, some of them trained on; put the "
            f"file back as it was, or give the split a file of its own (data.{split}_path)"
        )
    rank_zero_warn(
        f"{said} (its size or time; contents not compared): if its rows changed, the split does too"
    )


def _training_data(data) -> dict | None:
    """A dumped ``data`` section without its evaluation-only options; paths resolved (``data/x.csv`` and its
    absolute form are one file)."""
    if not isinstance(data, dict):
        return data
    init = {
        k: str(Path(v).resolve()) if k.endswith("_path") and isinstance(v, str) else v
        for k, v in (data.get("init_args") or {}).items()
        if k not in EVALUATION_ONLY
    }
    return {"class_path": data.get("class_path"), "init_args": init}


def _saved_config(saved: Path) -> dict | None:
    """A run's ``config.yaml`` as data; None when it is missing or not a mapping of YAML."""
    try:
        theirs = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return theirs if isinstance(theirs, dict) else None


def _differences(theirs: dict, run: dict) -> list[tuple[str, object, object]]:
    """``(dotted key, saved value, this value)`` of each setting in which a saved run (``theirs``, its
    ``config.yaml``) differs from this ``run``'s ``model`` section and, where ``run`` has one, its training ``data``
    (as the CLI dumps them; the data's evaluation-only options aside, and options added since the run was saved
    at their default: ``as_saved``)."""
    then, ours = {"model": theirs.get("model")}, {"model": as_saved(theirs.get("model"), run.get("model"))}
    if "data" in run:
        then["data"] = _training_data(theirs.get("data"))
        ours["data"] = as_saved(then["data"], _training_data(run["data"]))
    # an empty mapping is no setting (``init_args: {}`` beside none); the model's options a run given as
    # ``evaluation_only`` sets aside (how validate/test decode: beam_width) are the same run
    aside = {f"model.init_args.{k}" for k in run.get("evaluation_only", ())}
    then, ours = ({k: v for k, v in flatten(s).items() if v != {} and k not in aside} for s in (then, ours))
    return [
        (k, then.get(k), ours.get(k)) for k in sorted(set(then) | set(ours)) if then.get(k) != ours.get(k)
    ]


def _same_model(saved: Path, run: dict) -> bool:
    """Whether the run whose ``config.yaml`` is ``saved`` has this ``run``'s ``model`` section and trained on its
    ``data`` (no ``_differences``)."""
    theirs = _saved_config(saved)
    return theirs is not None and not _differences(theirs, run)


def as_saved(saved, current):
    """``current`` (a dumped class section: ``class_path`` and ``init_args``, nested) without the options its
    classes gained after ``saved`` was written (absent there) where they hold their default: a run made before an
    option existed is the same run (it trained as the default does)."""
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return current
    if "init_args" in current and saved.get("class_path") == current.get("class_path"):
        cls = import_class(str(current.get("class_path")))
        try:
            defaults = {k: v.default for k, v in inspect.signature(cls).parameters.items()} if cls else {}
        except (TypeError, ValueError):
            defaults = {}
        old, init = saved.get("init_args") or {}, dict(current.get("init_args") or {})
        for key in [k for k in init if k not in old and k in defaults and init[k] == defaults[k]]:
            del init[key]
        return {**current, "init_args": {k: as_saved(old.get(k), v) for k, v in init.items()}}
    return {k: as_saved(saved.get(k), v) for k, v in current.items()}


def find_last_run(config, run: dict) -> tuple[Path, Path] | None:
    """``(run folder, last.ckpt)`` of the newest run under the first versioned logger (CSV/TensorBoard) whose
    saved ``config.yaml`` has this ``run``'s model and training data (as the CLI dumps them); None if none."""
    base = _versioned_base(config)
    if base is None:
        return None
    candidates = []
    for ckpt in base.glob("*/checkpoints/last*.ckpt"):  # last-v1.ckpt: ModelCheckpoint's version counter
        if _same_model(ckpt.parent.parent / "config.yaml", run):
            candidates.append(ckpt)
    if candidates:
        ckpt = max(candidates, key=lambda p: p.stat().st_mtime)
        return ckpt.parent.parent, ckpt
    return None


def nearest_run(config, run: dict) -> tuple[Path, list[str]] | None:
    """For a ``--ckpt_path last`` that found no run of this model and data: the ``last.ckpt`` of the run of the same
    task, net and data classes whose settings differ in the fewest keys (the newest of those; its run folder is
    the checkpoint's grandparent), and the keys that differ (``model.init_args.optimizer.init_args.lr: 0.003 ->
    0.01``), so the user hears which setting made it another run. None when there is no such run."""
    base = _versioned_base(config)
    if base is None:
        return None
    found = []
    for ckpt in base.glob("*/checkpoints/last*.ckpt"):
        theirs = _saved_config(ckpt.parent.parent / "config.yaml")
        if theirs is None:
            continue
        differences = _differences(theirs, run)
        if any(key.endswith("class_path") for key, _, _ in differences):  # another task, net or data
            continue
        diffs = [f"{key}: {then!r} -> {now!r}" for key, then, now in differences]
        found.append((len(diffs), -ckpt.stat().st_mtime, ckpt, diffs))
    if not found:
        return None
    _, _, ckpt, diffs = min(found, key=lambda f: f[:2])
    return ckpt, diffs


def _versioned_base(config) -> Path | None:
    """The folder of the run folders (``version_N``) of the first versioned logger (CSV/TensorBoard), if any."""
    for entry in logger_entries(config):
        init = entry.get("init_args") or {}
        if entry.get("class_path", "").endswith(("CSVLogger", "TensorBoardLogger")) and init.get("save_dir"):
            return Path(init["save_dir"]) / (init.get("name") or "lightning_logs")
    return None


def _refuse_without_last(run_dir: Path) -> None:
    """A run of this model that kept checkpoints but not ``last.ckpt`` (deleted by hand: it is written with every
    save) is neither resumed nor passed over for a new run without a word: the user chooses."""
    kept = _newest_first((run_dir / "checkpoints").glob("*.ckpt"))
    if kept:
        raise ConfigError(
            f"--ckpt_path last: {run_dir} is a run of this model and data without its last.ckpt (it kept "
            f"{', '.join(p.name for p in kept)}): resume from one with --ckpt_path {kept[0]} (the newest), or leave "
            "out --ckpt_path to start a new run"
        )


def unsaved_runs(config, run: dict) -> list[Path]:
    """The run folders of this model and data that hold no checkpoint (stopped before their first save), for
    ``fit --ckpt_path last``'s word that it starts a new run beside them (trial 33: beside one, unsaid)."""
    base = _versioned_base(config)
    # version_2 before version_10
    folders = sorted(base.glob("*/"), key=lambda f: (len(f.name), f.name)) if base is not None else []
    return [f for f in folders if _same_model(f / "config.yaml", run) and not any(f.rglob("*.ckpt"))]


def resume_last(config, run: dict) -> str | None:
    """For ``fit --ckpt_path last``: point the config's loggers at the newest run of this model and data and return its
    ``last.ckpt`` (None, and a fresh run, when there is none yet: the same command starts and resumes a job).
    Without a logger a run has one folder, ``trainer.default_root_dir``: its ``checkpoints/last.ckpt``."""
    if config.get("trainer", {}).get("logger") is False:
        root = Path(config.get("trainer", {}).get("default_root_dir") or ".")
        last = root / "checkpoints" / "last.ckpt"
        if not last.is_file():
            if _same_model(root / "config.yaml", run):
                _refuse_without_last(root)
            return None
        if not _same_model(root / "config.yaml", run):  # one folder: a new run would overwrite its last.ckpt
            raise ConfigError(
                f"--ckpt_path last: {last} is a run of another model config or data ({root / 'config.yaml'}); give "
                "another --trainer.default_root_dir, or leave out --ckpt_path to start over there"
            )
        return str(last)
    found = find_last_run(config, run)
    if found is None:
        base = _versioned_base(config)  # a run of this model whose last.ckpt is gone: not a new run silently
        for folder in base.glob("*/") if base is not None else ():
            if _same_model(folder / "config.yaml", run):
                _refuse_without_last(folder)
        return None
    run_dir, ckpt = found
    ckpt = _newer_hpc_checkpoint(config, run_dir, ckpt)
    wandb_id = checkpoint_info(ckpt)[WANDB_ID_KEY]
    for entry in logger_entries(config):
        init = entry.get("init_args")
        name = entry.get("class_path", "")
        if name.endswith(("CSVLogger", "TensorBoardLogger")):
            init["version"] = run_dir.name
        elif "Wandb" in name and wandb_id:
            init["id"] = wandb_id  # WandbLogger resumes with resume="allow" by default
    return str(ckpt)


def open_quietly(logger: CSVLogger):
    """The CSV logger's writer, opened without Lightning's warning that a folder holding other files loses its
    old log files: the caller keeps the rows it keeps (``keep_metrics``), or the folder holds no log yet (a
    ``compare`` run's settings file)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        return logger.experiment


def keep_metrics(logger: CSVLogger, step: int) -> None:
    """A resumed run's ``metrics.csv`` keeps the rows of the steps before its checkpoint (Lightning's CSV writer
    deletes the file of a folder it opens again). Rows logged after the checkpoint (a killed run's last steps)
    go: the resumed run logs those steps again. Call before the logger's first use."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if _before(r, step)]
    writer = open_quietly(logger)  # opening it deletes the file
    writer.metrics_keys = sorted(header)  # what it appends to; a new metric rewrites the header with it
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=writer.metrics_keys)
        out.writeheader()
        out.writerows(rows)


def _before(row: dict, step: int) -> bool:
    """A row logged before a checkpoint at ``step``: a training row's step counts the steps before it, so a
    row at ``step`` came after; a validation at ``step`` ran before the checkpoint was saved."""
    logged = float(row.get("step") or 0)
    return logged < step or (logged == step and any(k.startswith("val") and row[k] for k in row))


def _rng_state() -> dict:
    """Every RNG a run draws from (python, numpy, torch CPU and CUDA), as tensors and plain values: checkpoints
    load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(Callback):
    """Kept in every checkpoint (the CLI adds it to every run): the RNG states, restored when the resumed
    training starts (after set-up and sanity checks, which draw their own; data loaders draw from their own
    generators), and the W&B run id, so that ``fit --ckpt_path last`` continues the same W&B run."""

    def __init__(self):
        self._pending: dict | None = None
        self._files: dict[str, str] | None = None  # the training data's fingerprints, taken at the first save

    def state_dict(self) -> dict:
        """Rank 0's RNG states, and under torch.distributed every rank's (gathered: ``trainer.save_checkpoint``
        runs on every rank), so that each process resumes its own streams: ranks that drew differently (their
        batches' shapes, work done on rank 0 alone) would otherwise all go on from rank 0's."""
        state = _rng_state()
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return {"rng": state}
        states: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(states, state)
        return {"rng": states[0], "rng_per_rank": states}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is None:
            return
        per_rank = self._pending.get("rng_per_rank")
        if per_rank and len(per_rank) == trainer.world_size:
            _set_rng_state(per_rank[trainer.global_rank])
        elif self._pending.get("rng") is not None:  # another number of processes: rank 0's streams for all
            if per_rank:
                rank_zero_warn(
                    f"resumed on {trainer.world_size} processes from a checkpoint of {len(per_rank)}: every process "
                    "continues rank 0's random streams, so the run does not repeat the one it resumes exactly"
                )
            _set_rng_state(self._pending["rng"])
        self._pending = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._files is None:  # the process that writes the checkpoint reads the data's files, once
            hparams = getattr(trainer.datamodule, "hparams", None)
            self._files = training_files(dict(hparams)) if hparams and trainer.is_global_zero else {}
        checkpoint[DATA_KEY] = self._files
        if trainer.loggers:  # not trainer.log_dir: that is a collective under DDP
            first = trainer.loggers[0]
            checkpoint[RUN_DIR_KEY] = str(getattr(first, "log_dir", None) or first.save_dir)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version:
                checkpoint[WANDB_ID_KEY] = logger.version
