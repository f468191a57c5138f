"""LightningCLI for every task: the task and the data by ``class_path``, sizes the data knows linked into the
model (never typed twice), the optimizer and schedule as the task's own arguments.

Config files load in this order: ``experiments/base.yaml``, the modality's ``base.yaml`` (for a file under
``experiments/<modality>/``, see ``experiments.configs``), then the files and options given.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from archbench.checkpoint_files import check_checkpoint, checkpoint_data, checkpoint_task
from archbench.errors import ConfigError, DataError, UserError, first_line
from datamodules.files import check_folder
from datamodules.sampling import empty_split
from experiments.callbacks import FiniteValidation, SayEarlyStop
from experiments.checkpoints import NAMED
from experiments.configs import (
    GLOBAL_BASE,
    expand_configs,
    import_class,
    options_before_configs,
    plain_config,
    with_built_values,
)
from experiments.resume import (
    DECODING_ONLY,
    AtomicCheckpointIO,
    ResumeState,
    check_held_out_source,
    check_same_files,
    checkpoint_info,
    keep_metrics,
    logger_entries,
    named_checkpoint,
    nearest_run,
    resume_last,
    saved_net,
    unsaved_runs,
)
from lit_models.task import Task

NET = "model.init_args.net.init_args"
# Sizes read off the instantiated datamodule and passed to the constructors. A target the chosen class does
# not have (seq_len of a recurrent net, target_mean of a language model) is left out by jsonargparse.
DATA_LINKS = {
    "data.in_channels": f"{NET}.in_channels",
    "data.vocab_size": f"{NET}.vocab_size",
    "data.target_vocab_size": f"{NET}.target_vocab_size",  # sequence pairs: the target side's symbols
    "data.seq_len": f"{NET}.seq_len",
    "data.num_outputs": [f"{NET}.num_outputs", "model.init_args.num_outputs"],
    "data.task": "model.init_args.task",
    "data.target_mean": "model.init_args.target_mean",
    "data.target_std": "model.init_args.target_std",
}

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


def _shown(diffs: list[str]) -> str:
    """The settings in which a run differs (``nearest_run``), the first three."""
    return "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's config saving, but a ``test``, ``validate`` or ``predict`` never writes over the
    ``config.yaml`` of the run it evaluates: without a logger (``--trainer.logger false``) its log folder is the
    trained run's ``default_root_dir``, and the fit's record of how the weights were made would go. It writes
    ``config.<stage>.yaml`` beside it instead; with a logger it has a version folder of its own, as before."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        """The whole run config in each W&B run's config (``config``: the net, the optimizer, the seed, the
        trainer's bounds), so two runs differ there as they differ in fact; the task's and the data's own
        hyper-parameters, which Lightning logs, hold neither the net nor the optimizer. (LightningCLI's hook
        for saving the config elsewhere than the log folder.)"""
        for logger in trainer.loggers:
            # compare's runs log theirs (with the row's name and seed) before the fit: kept as they are
            if isinstance(logger, WandbLogger) and "config" not in logger.experiment.config:
                # as compare logs it: the parsed config as plain data (no API key can be in it)
                plain = with_built_values(plain_config(self.config), pl_module, trainer.datamodule)
                logger.log_hyperparams({"config": plain})

    def setup(self, trainer, pl_module, stage: str) -> None:
        log_dir = trainer.log_dir if stage != "fit" and not self.already_saved else None
        if log_dir is not None and os.path.isfile(os.path.join(log_dir, self.config_filename)):
            self.config_filename = f"config.{getattr(stage, 'value', stage)}.yaml"  # TrainerFn or str
        super().setup(trainer, pl_module, stage)


class ExperimentCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True, parse_only: bool = False, **kwargs):
        """``parse_only``: parse and check the options, build nothing (``compare`` checks every row so, up front)."""
        self._parse_only = parse_only
        if args is None:  # as LightningCLI would read them, with the modality bases put in
            sys.argv[1:] = expand_configs(sys.argv[1:])
        else:
            args = expand_configs(list(args))
        self._given = list(sys.argv[1:] if args is None else args)  # the command line's own model options
        self._before_configs = options_before_configs(self._given)
        if self._before_configs and rank_zero_only.rank == 0:
            print(f"note: {', '.join(self._before_configs)} given before --config: options and config files are "
                  "read in order, so a later config file may set it again, and an option of a class the file "
                  "chooses is read before it is chosen; put --config first", file=sys.stderr)  # fmt: skip
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._subcommands = run
        # Parse errors raise (the command line prints them as one line) instead of printing usage and exiting.
        # No abbreviated options: `--trainer.max_ep 1` is refused as unknown (with a suggestion), not taken for
        # whichever option it begins.
        defaults = {"default_env": False, "default_config_files": [str(GLOBAL_BASE)], "exit_on_error": False,
                    "allow_abbrev": False}  # fmt: skip
        # With subcommands (run=True) parser options go to each subcommand's parser; without them
        # (run=False, as compare builds its runs) to the single parser. Both must load the defaults.
        kwargs.setdefault("parser_kwargs", {c: defaults for c in self.subcommands()} if run else defaults)
        if run:
            kwargs["parser_kwargs"].setdefault("exit_on_error", False)
            kwargs["parser_kwargs"].setdefault("allow_abbrev", False)
        super().__init__(
            Task,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,  # the task's own optimizer and lr_scheduler arguments
            # RNG states and the W&B run id in every checkpoint; a validation loss gone NaN stops the run
            trainer_defaults={"callbacks": [ResumeState(), FiniteValidation(), SayEarlyStop()]},
            args=args,
            run=run,
            **kwargs,
        )

    def _say_linked_given(self) -> None:
        """A size the CLI links from the data (``num_outputs``, ``in_channels``, ...) given in a config file or on
        the command line is not used: jsonargparse puts the data's value over it without a word. Said, with
        where it was given."""
        from lightning.pytorch.utilities import rank_zero_warn

        from experiments.configs import _config_values, where_set

        texts = " ".join(self._given)  # the command line and every config's text, read once
        for _, value in _config_values(self._given):
            with contextlib.suppress(OSError):
                texts += value if "\n" in value else Path(value).read_text()
        for source, targets in DATA_LINKS.items():
            for target in [targets] if isinstance(targets, str) else targets:
                if target.rsplit(".", 1)[-1] not in texts:  # the usual case: nothing parsed on every run
                    continue
                short = target.replace(".init_args.", ".")
                where = where_set(f"{short}: given", self._given)  # a file's line; "" for the command line
                on_line = any(a.split("=", 1)[0].removeprefix("--").replace(".init_args.", ".") == short
                              for a in self._given if a.startswith("--"))  # fmt: skip
                if where or on_line:
                    rank_zero_warn(
                        f"{where}{short}: the value given is not used: it is linked from the data ({source}); "
                        "leave it out"
                    )

    def _parse_ckpt_path(self) -> None:
        """Lightning's: with ``--ckpt_path``, the checkpoint's hyper-parameters are parsed over the config, and
        the command line's model options went with them (``test --ckpt_path X --model.beam_width 5`` decoded
        greedily, without a word; a ``--model.beam_width 0`` was not even checked). Those options are put back
        over the checkpoint's: what the command line says wins. A private method of LightningCLI that this
        overrides (no public hook exists; Lightning issue #20801, PR #21455 makes it the default)."""
        sub = self.config.get("subcommand")
        before = self.config.clone() if sub else None
        super()._parse_ckpt_path()
        if before is None:
            return
        for option in self._given:
            name = option.split("=", 1)[0]
            if not name.startswith("--model."):
                continue
            path = _namespace_path(before[sub], name.removeprefix("--").split("."))
            if path is not None:
                self.config[f"{sub}.{path}"] = before[f"{sub}.{path}"]

    def add_arguments_to_parser(self, parser) -> None:
        if (
            not self._subcommands
        ):  # a run's saved config.yaml carries its subcommand's keys: read, not used here
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="(a fit's; not used here)")
            parser.add_argument(
                "--weights_only", type=bool | None, default=None, help="(a fit's; not used here)"
            )
        # The budget rule of every run (experiments/base.yaml): `--early_stopping.patience 10`,
        # `--early_stopping.monitor val/pearson --early_stopping.mode max`. A key of its own (LightningCLI's
        # way for a callback that is always there) rather than an entry of trainer.callbacks, which a command
        # line cannot change one item of.
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/loss", "early_stopping.patience": 4,
                             "early_stopping.check_on_train_epoch_end": False})  # fmt: skip
        for source, targets in DATA_LINKS.items():
            for target in [targets] if isinstance(targets, str) else targets:
                parser.link_arguments(source, target, apply_on="instantiate")
        # Only image data has a size; a net without the argument (every sequence net) ignores the link.
        parser.link_arguments("data", f"{NET}.img_size", _img_size, apply_on="instantiate")
        # The input a timm model expects (size, mean/std) flows from its config into the image data.
        parser.link_arguments(
            "model.init_args.net", "data.init_args.input_config", _net_input, apply_on="parse"
        )

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            message = str(err)
            if (
                "class_path 'lightning.LightningDataModule'" in message
                or "arguments are required: data" in message
            ):
                data_first = [o for o in self._before_configs if o.startswith("--data.")]
                if data_first:  # the config that chooses the data came after: its choice was not made yet
                    raise ConfigError(
                        f"data: no datamodule chosen yet when {data_first[0]} was read: options and config files "
                        "are read in order; put --config first"
                    ) from None
                raise ConfigError(
                    "data: no datamodule chosen (data.class_path); load a modality's config, e.g. --config "
                    "experiments/dna/lstm.yaml, or give --data CLASS"
                ) from None
            raise
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and ckpt not in NAMED:  # before Lightning reads it: one line for a missing or damaged file
            checkpoint = self._read_checkpoint(ckpt)
            # Lightning parses the checkpoint's hyperparameters into the config's model next: another task's
            # would fail there with a type error that names neither the file nor the task
            theirs = checkpoint_task(checkpoint)
            ours = str((self.config[subcommand].get("model") or {}).get("class_path") or "").rsplit(".", 1)[
                -1
            ]
            if theirs and ours and theirs != ours:
                raise ConfigError(
                    f"ckpt_path: {ckpt!r} is a checkpoint of {theirs}, not of the config's model {ours}: give that "
                    "task's config (or a checkpoint of this one)"
                )
            # the same task on other data: said as such, not as the tensors that differ (an alias of a
            # package, datamodules.DNADataModule, is the same class: names compared)
            saved = checkpoint_data(checkpoint).rsplit(".", 1)[-1]
            data = str((self.config[subcommand].get("data") or {}).get("class_path") or "").rsplit(".", 1)[-1]
            if saved and data and saved != data:
                raise ConfigError(
                    f"ckpt_path: {ckpt!r} was trained on {saved} data, and the config reads {data}: give the "
                    "config it was trained with"
                )

    def _read_checkpoint(self, path: str) -> dict:
        """``check_checkpoint`` once per path (memory-mapped): the check at parse time and the one against the
        model before fitting read the same file."""
        cache = self.__dict__.setdefault("_checkpoints", {})
        if path not in cache:
            cache[path] = check_checkpoint(path)
        return cache[path]

    def _section(self, config):
        return config[self.subcommand] if self.subcommand else config

    def before_instantiate_classes(self) -> None:
        config = self._section(self.config)
        self._home_expanded(config)
        self._default_logger_named(config)
        self._move_loggers(config)
        self._refuse_files_as_folders(config)
        self._say_linked_given()
        precision = config.trainer.get("precision")
        if precision is not None and str(precision) not in PRECISIONS:  # e.g. 64: the data is float32
            raise ConfigError(f"trainer.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        on_cpu = _on_cpu(config.trainer)
        if self.subcommand:  # a run: not a checkpoint's config read to export or draw it (compare: run_one)
            self.refuse_fp16_on_cpu()
        devices = str(config.trainer.get("devices"))  # "3" as parsed from the command line, 3 from a file
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if on_cpu and devices.isdigit() and int(devices) > cores and not os.environ.get("LOCAL_RANK"):
            # trial 32: 3 processes on 2 cores, unsaid; allowed (a test of DDP), each just slower
            warnings.warn(
                f"trainer.devices: {devices} CPU processes on {cores} cores: they share the cores, each slower than "
                "one process alone",
                stacklevel=1,
            )
        interval = config.trainer.get("val_check_interval")
        numeric = isinstance(interval, int | float) and not isinstance(
            interval, bool
        )  # or a time: "00:00:10:00"
        if numeric and not interval > 0:  # Lightning divides by it after the first step
            raise ConfigError(
                f"trainer.val_check_interval: {interval} is neither a positive number of batches nor a fraction "
                "of an epoch in (0, 1]"
            )
        if self.subcommand and config.get("weights_only") is None:
            config.weights_only = True  # checkpoints are tensors and plain values, never pickles
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            # The newest run of this model in its own folder and W&B run; none yet: a fresh run.
            dumped = yaml.safe_load(self._parser("fit").dump(config, skip_unset=False, skip_validation=True))
            run = {"model": dumped.get("model"), "data": dumped.get("data")}
            config.ckpt_path = resume_last(config, run)
            if config.ckpt_path:
                check_same_files(config, config.ckpt_path, "last")
                if rank_zero_only.rank == 0:  # once, not once per DDP process (trial 32)
                    print(f"resuming from {config.ckpt_path}")
                step = checkpoint_info(config.ckpt_path)["global_step"]  # None: a sharded (FSDP) folder
                self._resumed_step = int(step) if step is not None else None
            elif near := nearest_run(config, run):  # a setting changed: which, and how to go on from that run
                last, diffs = near
                print(f"--ckpt_path last: starting a new run: {last.parent.parent}, the nearest earlier run of this "
                      f"model, was made with other settings ({_shown(diffs)}). To go on from its checkpoint "
                      f"instead, give --ckpt_path {last}", file=sys.stderr)  # fmt: skip
            else:
                unsaved = unsaved_runs(config, run)
                its = "its" if len(unsaved) == 1 else "their"
                beside = (f" ({', '.join(map(str, unsaved))} stopped before {its} first save: no checkpoint there)"
                          if unsaved else "")  # fmt: skip
                if rank_zero_only.rank == 0:
                    print(f"--ckpt_path last: no earlier run of this model and data to resume{beside}; starting a "
                          "new run")  # fmt: skip
        elif self.subcommand == "fit" and config.get("ckpt_path") and Path(config.ckpt_path).is_file():
            check_same_files(config, config.ckpt_path, config.ckpt_path)
        elif self.subcommand in ("validate", "test", "predict"):
            self._unpin_logger_versions(config)
            self._evaluated_checkpoint(config)
        self._data_from_checkpoint(config)
        self._dump_model_hparams()  # what the hyper-parameters hold: the config as changed above

    def _unpin_logger_versions(self, config) -> None:
        """A resumed run's ``config.yaml`` pins its loggers to the run's own version folder and W&B run (so that the
        resume went on there). Given to ``validate``/``test``/``predict``, the CSV logger would open that folder
        again and Lightning's writer delete the fit's ``metrics.csv`` (trial 22), and a second predict would write
        over the first's predictions: a pinned folder that holds a fit (its ``checkpoints/``) gets a new version
        folder beside it instead, as with a config that pins none, and then a new W&B run too. A version that
        names a folder of evaluations (``--trainer.logger.init_args.version final_eval``) stays as given."""
        moved = False
        entries = [e for e in logger_entries(config) if hasattr(e, "get")]
        for entry in entries:
            init = entry.get("init_args") or {}
            pinned = init.get("version")
            if (
                str(entry.get("class_path", "")).endswith(("CSVLogger", "TensorBoardLogger"))
                and pinned is not None
            ):
                version = pinned if isinstance(pinned, str) else f"version_{pinned}"
                root = init.get("save_dir") or config.trainer.get("default_root_dir") or "."
                folder = Path(root) / (init.get("name") or "") / version
                if (folder / "checkpoints").is_dir():
                    init["version"] = None
                    moved = True
                    print(f"{self.subcommand}: {folder} holds a fit's logs and checkpoints (the config pins "
                          f"trainer.logger's version {pinned!r}, as a resumed run's config.yaml does): this "
                          f"{self.subcommand} writes to a new version folder beside it")  # fmt: skip
        for entry in entries if moved else ():
            init = entry.get("init_args") or {}
            if "Wandb" in str(entry.get("class_path", "")) and init.get("id"):
                init["id"] = None  # the trained run's W&B run stays as it ended

    @staticmethod
    def _refuse_files_as_folders(config) -> None:
        """The run's folders (``trainer.default_root_dir``, each logger's ``save_dir``) must be folders or not exist
        yet, nor lie inside a file: one line before anything is built, not an OS error from a logger."""
        folders = {"trainer.default_root_dir": config.trainer.get("default_root_dir")}
        for i, entry in enumerate(logger_entries(config)):
            init = (entry.get("init_args") if hasattr(entry, "get") else None) or {}
            folders[f"trainer.logger[{i}].init_args.save_dir"] = init.get("save_dir")
        for option, folder in folders.items():
            if not folder or "://" in str(folder):  # a remote store (s3://) is the filesystem's business
                continue
            check_folder(str(folder), option)

    @staticmethod
    def _home_expanded(config) -> None:
        """``~`` in ``trainer.default_root_dir`` and the loggers' ``save_dir`` expanded once, here: quoted (a YAML
        value, ``--opt=~/x``) it reaches no shell, and the loggers expanded it where the checkpoints and the
        ``last`` lookup did not (trial 12: one run in two folders, a resume that started over)."""
        root = config.trainer.get("default_root_dir")
        if isinstance(root, str) and root.startswith("~"):
            config.trainer.default_root_dir = os.path.expanduser(root)
        for entry in logger_entries(config):
            init = (entry.get("init_args") if hasattr(entry, "get") else None) or {}
            if isinstance(init.get("save_dir"), str) and init["save_dir"].startswith("~"):
                init["save_dir"] = os.path.expanduser(init["save_dir"])
        data = config.get("data")
        init = (data.get("init_args") if hasattr(data, "get") else None) or {}
        for key in list(init.keys()) if hasattr(init, "keys") else []:  # the data's files and tokenizer too
            value = init[key]
            if (
                isinstance(value, str)
                and value.startswith("~")
                and (key.endswith(("_path", "_dir")) or "tokenizer" in key or key == "checkpoint")
            ):
                init[key] = os.path.expanduser(value)

    @staticmethod
    def _default_logger_named(config) -> None:
        """A config that sets no logger (``trainer.logger`` unset or ``true``: a user's own files, with no modality
        base) gets Lightning's default written out: a TensorBoardLogger where tensorboard is installed, else a
        CSVLogger, in ``trainer.default_root_dir`` (or here) under ``lightning_logs/version_N``, as Lightning makes
        it (but for its TensorBoard default's version under SLURM, the job's id: here ``version_N`` there too).
        Named, the run folder is one ``--ckpt_path last`` and ``best`` find (trial 11: a killed run of a user's own
        config started over), and it is in the run's ``config.yaml``."""
        if config.trainer.get("logger") not in (None, True):
            return
        # Lightning's rule for its default logger
        tensorboard = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
        name = "TensorBoardLogger" if tensorboard else "CSVLogger"
        root = os.path.normpath(config.trainer.get("default_root_dir") or ".")
        config.trainer.logger = Namespace(
            class_path=f"lightning.pytorch.loggers.{name}", init_args=Namespace(save_dir=root)
        )

    @staticmethod
    def _move_loggers(config) -> None:
        """``trainer.default_root_dir``, when given, is where the run goes: the loggers' ``save_dir`` too (the
        modality bases set theirs to ``runs/<modality>``, which Lightning would otherwise keep), so one option
        moves the run folder, its checkpoints and the W&B files."""
        root = config.trainer.get("default_root_dir")
        loggers = config.trainer.get("logger")
        if not root or not loggers or loggers is True:
            return
        for entry in loggers if isinstance(loggers, list) else [loggers]:
            init = entry.get("init_args") if hasattr(entry, "get") else None
            if init is not None and "save_dir" in init:
                init.save_dir = str(root)

    def _evaluated_checkpoint(self, config) -> None:
        """validate / test / predict: ``last`` and ``best`` are the newest run of this model's (found as ``fit
        --ckpt_path last`` finds it; Lightning would look only in this fresh trainer's folders, find nothing and
        go on with the untrained model); no checkpoint at all is said, not silent."""
        ckpt = config.get("ckpt_path")
        if ckpt is None:
            print(f"warning: {self.subcommand} without --ckpt_path: the model as its config builds it (untrained, "
                  "unless the config loads weights); --ckpt_path PATH, last or best for a trained run",
                  file=sys.stderr)  # fmt: skip
        elif ckpt in ("last", "best"):
            dumped = yaml.safe_load(
                self._parser(self.subcommand).dump(config, skip_unset=False, skip_validation=True)
            )
            run = {"model": dumped.get("model"), "data": dumped.get("data"), "evaluation_only": DECODING_ONLY}
            found = named_checkpoint(config, run, ckpt)
            if found is None:
                near, hint = nearest_run(config, run), ""
                if near:  # a setting that differs (a column name given for a new file, say): which one
                    folder, diffs = near[0].parent.parent, near[1]
                    kept = sorted((folder / "checkpoints").glob("last*.ckpt" if ckpt == "last" else "best*.ckpt"),
                                  key=lambda p: p.stat().st_mtime)  # fmt: skip
                    if kept:
                        hint = (f"; the nearest run, {folder}, was made with other settings ({_shown(diffs)}): "
                                f"give --ckpt_path {kept[-1]} for it")  # fmt: skip
                raise ConfigError(
                    f"--ckpt_path {ckpt}: no run of this model config and training data with a {ckpt} checkpoint under its logger's "
                    "folder (or trainer.default_root_dir without a logger); give the checkpoint's path" + hint
                )
            self._read_checkpoint(str(found))
            config.ckpt_path = str(found)
            print(f"{self.subcommand}: {ckpt} checkpoint {found}")

    def _data_from_checkpoint(self, config) -> None:
        """predict with a checkpoint file and a ``data.predict_path``, or test (or predict) with a ``data.test_path``
        and no ``data.predict_path``: the data's state (class names, tokenizer, sizes, statistics) comes from the
        checkpoint (``data.checkpoint``), so the model reads the new data as it read its training data, and the
        training files are not read (they need not exist; a trained tokenizer is not trained again on a training
        split that a test file of its own changed). A checkpoint saved without that state (an older version)
        leaves the data to read its training files, as before."""
        ckpt, data = config.get("ckpt_path"), config.get("data")
        init = data.get("init_args") if data is not None else None
        if init is None or "checkpoint" not in init:
            return
        given = init.checkpoint  # a config that names one (a predict run's config.yaml) reads no other's data
        if given and self.subcommand not in ("predict", "test"):
            raise ConfigError(f"data.checkpoint: {given}: only predict and test take the data from a checkpoint "
                              "(--ckpt_path sets it); leave data.checkpoint out")  # fmt: skip
        if given and given != ckpt:
            raise ConfigError(f"data.checkpoint: {given} is not --ckpt_path {ckpt}: {self.subcommand} takes the data "
                              "from the checkpoint it runs (it sets data.checkpoint); leave data.checkpoint out")  # fmt: skip
        saved_state = getattr(import_class(str(data.class_path)), "saved_state", None)
        # the file read in place of the training data: predict_path where there is one, else test_path
        file = "predict_path" if init.get("predict_path") else "test_path" if init.get("test_path") else None
        if given and self.subcommand == "test" and file != "test_path":
            raise ConfigError(f"data.checkpoint: {given}: test from a checkpoint reads data.test_path alone, and "
                              f"this config has {'data.predict_path' if file else 'none'}; leave data.checkpoint out "
                              "(test with a data.test_path and no data.predict_path sets it)")  # fmt: skip
        wanted = {"predict": ("predict_path", "test_path"), "test": ("test_path",)}.get(self.subcommand, ())
        if file not in wanted or not ckpt or saved_state is None:
            return
        if saved_state(self._read_checkpoint(ckpt)) is not None:
            init.checkpoint = ckpt
            print(f"{self.subcommand}: the data as the model was trained (class names, tokenizer, sizes, statistics) "
                  f"from {ckpt}; the training files are not read{self._pretrained_not_read(config)}")  # fmt: skip

    @staticmethod
    def _pretrained_not_read(config) -> str:
        """A timm net's starting weights (``weights_file``, ``pretrained``) left out where the checkpoint gives the
        weights and the data's sizes and statistics: a run predicts on another machine without the file, offline
        without the hub (trial 25: a fine-tuned DINOv2 asked for its 97 MB weights file); what is said."""
        net = (config.get("model") or {}).get("init_args", {}).get("net") if config.get("model") else None
        init = net.get("init_args") if net is not None and hasattr(net, "get") else None
        if init is None or not str(net.get("class_path", "")).endswith("TimmNet"):
            return ""
        left = [f"model.net.init_args.{k}" for k in ("weights_file", "pretrained") if init.get(k)]
        init.weights_file, init.pretrained = None, False
        return f", nor {' and '.join(left)} (the checkpoint holds the weights)" if left else ""

    def before_fit(self) -> None:
        self.check_data_first("fit")
        if getattr(self, "_resumed_step", None) is not None and self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                if isinstance(logger, CSVLogger):
                    keep_metrics(logger, self._resumed_step)

    def before_validate(self) -> None:
        self.check_data_first("validate")

    def before_test(self) -> None:
        self.check_data_first("test")

    def before_predict(self) -> None:
        task = type(self.model)
        if task.predict_step is L.LightningModule.predict_step:  # Lightning's would call forward on the batch
            instead = getattr(task, "instead_of_predict", None)
            raise ConfigError(f"predict: {task.__name__} writes no predictions"
                              + (f"; use {instead}" if instead else ""))  # fmt: skip
        self.check_data_first("predict")
        # a prediction logs no metric: its W&B run would be an empty one in the project (predictions.tsv and the
        # settings go to the first logger's run folder, as before)
        kept = [logger for logger in self.trainer.loggers if not isinstance(logger, WandbLogger)]
        if kept:  # a W&B logger alone stays: its folder is where the predictions go
            self.trainer.loggers = kept

    def check_data_first(self, stage: str) -> None:
        """Read and check the data before the trainer starts its loggers (a W&B run, a version folder) and the
        config is saved: a data error then stops the command with nothing written. The trainer's own
        ``prepare_data`` and ``setup`` calls that follow find the work done (the datamodules cache it) and write
        the run folder's files (a tokenizer) once the trainer is attached."""
        data = self.datamodule
        if data is None:
            return
        data.prepare_data()
        data.setup(stage)
        # a split with nothing to evaluate, before a run folder or a W&B run exists (trial 30: both were left)
        evaluated = stage in ("validate", "test", "predict") and hasattr(data, "evaluated_examples")
        if evaluated and not data.evaluated_examples(stage):
            raise empty_split(stage)
        self.model.check_data_once(data, stage)
        ckpt = self._section(self.config).get("ckpt_path")
        init_from = getattr(self.model.hparams, "init_from", None)
        if stage == "fit" and init_from and not ckpt:  # weights that cannot start this net: nothing written
            self.model.check_init_from(data)
        if stage == "fit":
            self._refuse_interval_past_epoch(data)
            # callbacks that can tell now that they cannot work on this model and data
            for callback in self.trainer.callbacks:
                if hasattr(callback, "check_before_run"):
                    callback.check_before_run(self.model, data)
        if ckpt and ckpt not in NAMED:  # another model's checkpoint: refused before anything is written
            checkpoint = self._read_checkpoint(ckpt)
            if stage != "fit":
                check_held_out_source(data, checkpoint, ckpt, stage)
            if stage == "fit":
                self._refuse_past_max_epochs(checkpoint, ckpt)
                self._refuse_other_batches(checkpoint, ckpt, data)
            # other class names, another tokenizer: said as such first, not as the embedding's other shape
            saved = checkpoint.get(type(data).__qualname__)
            if saved:
                try:
                    data.load_state_dict(saved)
                except DataError as err:
                    # "RUN/tokenizer.json" in the message: the checkpoint's run folder's, where it has one
                    run = Path(ckpt).resolve().parent.parent / "tokenizer.json"
                    if "RUN/tokenizer.json" not in str(err) or not run.is_file():
                        raise
                    raise DataError(str(err).replace("RUN/tokenizer.json", str(run))) from None
            state = checkpoint.get("state_dict")  # None: a sharded (FSDP) folder
            if state is not None:
                self.model.refuse_mismatch(
                    state,
                    ckpt,
                    data,
                    checkpoint.get("datamodule_hyper_parameters"),
                    saved_net(checkpoint, ckpt),
                )

    def refuse_fp16_on_cpu(self) -> None:
        """``trainer.precision: 16-mixed`` where the run is on the CPU: Lightning runs bf16-mixed instead, with a
        warning, while the run's config and W&B run say 16-mixed (trial 32). For a run that trains or evaluates:
        a GPU run's own config read on a laptop to export its weights is not refused."""
        trainer = self._section(self.config).trainer
        if str(trainer.get("precision")) == "16-mixed" and _on_cpu(trainer):
            raise ConfigError(
                "trainer.precision: 16-mixed (float16 autocast) needs a GPU, and this run is on the CPU: give "
                f"bf16-mixed (or 32) ({available_hardware()})"
            )

    def _refuse_interval_past_epoch(self, data) -> None:
        """``trainer.val_check_interval`` in batches beyond an epoch's (with validation counted per epoch), which
        Lightning refuses with a traceback once the loggers have started (a run folder and a W&B run left
        behind, trial 26): refused now, in one line."""
        interval, trainer = self.trainer.val_check_interval, self.trainer
        if (
            not isinstance(interval, int)
            or isinstance(interval, bool)
            or trainer.check_val_every_n_epoch is None
            or trainer.limit_val_batches == 0  # no validation: Lightning does not check the interval then
        ):
            return
        try:
            batches = len(data.train_dataloader())
        except (TypeError, AttributeError, RuntimeError):  # no length (an iterable stream), or not known yet
            return
        limit = trainer.limit_train_batches
        if isinstance(limit, float):
            batches = int(batches * limit)
        elif isinstance(limit, int):
            batches = min(batches, limit)
        if interval > batches > 0:
            raise ConfigError(
                f"trainer.val_check_interval: {interval} batches, but an epoch here holds {batches}: give at most "
                f"{batches}, a fraction of an epoch (0.5), or trainer.check_val_every_n_epoch null to count batches "
                "across epochs"
            )

    def _refuse_other_batches(self, checkpoint: dict, ckpt: str, data) -> None:
        """A run that stopped mid-epoch resumes at a count of batches: read in batches of another size, or on
        another number of processes, that count means other examples (part of the epoch skipped or read twice,
        unsaid). Refused, naming what the run read; a run stopped between epochs resumes with any."""
        loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        states = (loop.get("state_dict") or {}).get("combined_loader") or []
        state = states[0] if states and isinstance(states[0], dict) else {}
        ended = (loop.get("epoch_loop.batch_progress") or {}).get("is_last_batch")
        # nothing consumed, between epochs, or a checkpoint of an older version (no sizes saved)
        if not state.get("batches") or ended or "batch_size" not in state:
            return
        from datamodules.sampling import per_device_batch_size

        then = (state["batch_size"], state.get("processes", 1))
        now = (per_device_batch_size(data.hparams, self.trainer), self.trainer.world_size)
        if then != now:
            same = ("--data.global_batch_size the global batch size it trained with"
                    if data.hparams.get("global_batch_size") else f"--data.batch_size {then[0]}")  # fmt: skip
            raise ConfigError(
                f"ckpt_path: {ckpt} stopped in epoch {state.get('epoch')} after {state['batches']} batches of "
                f"{then[0]} on {then[1]} process(es), and this run reads batches of {now[0]} on {now[1]}: its "
                f"position would mean other examples. Resume with {same} on {then[1]} process(es), or start a "
                "new run from its weights (--model.init_from CKPT)"
            )

    def _refuse_past_max_epochs(self, checkpoint: dict, ckpt: str) -> None:
        """A run resumed with a ``max_epochs`` below the epochs it has trained (Ctrl-C in epoch 23, resumed with
        ``max_epochs 3``): Lightning would stop inside its loop with "Please call iter(combined_loader) first".
        A run that finished at exactly ``max_epochs`` is left to say "nothing to train"."""
        epoch, limit = checkpoint.get("epoch"), self.trainer.max_epochs
        if isinstance(epoch, int) and limit not in (None, -1) and epoch > limit:
            raise ConfigError(
                f"ckpt_path: {ckpt} is at epoch {epoch} (step {checkpoint.get('global_step')}), past "
                f"trainer.max_epochs {limit}: raise trainer.max_epochs to train on, or start a new run"
            )

    def instantiate_classes(self) -> None:
        if self._parse_only:
            return
        try:
            super().instantiate_classes()
        except ValueError as err:
            raise user_error(err) from None

    def _dump_model_hparams(self) -> None:
        """The config Lightning saves as the model's hyperparameters (so ``PredictionTask.load_from_checkpoint``
        rebuilds the net), made here. Lightning makes it lazily, and a net whose every argument is linked from
        the data dumps without ``init_args``: setting the linked sizes into it then fails with an
        AssertionError ("Expected key net.init_args.in_channels to be in data"). An empty ``init_args`` fixes it."""
        dumped = yaml.safe_load(  # just parsed and checked: not validated a second time
            self.parser.dump(self.config, skip_link_targets=False, skip_unset=False, skip_validation=True)
        )
        section = dumped[self.subcommand] if self.subcommand else dumped
        net = ((section.get("model") or {}).get("init_args") or {}).get("net")
        if isinstance(net, dict) and net.get("class_path"):
            net.setdefault("init_args", {})
        self.config_dump = section

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = self._section(self.config_init)["trainer"]
        callbacks = list(trainer.get("callbacks") or [])
        if not trainer.get("logger"):  # a run without a logger has no learning rate to monitor
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        kwargs.setdefault("callbacks", callbacks)
        plugins = trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # a kill never leaves half a checkpoint
        kwargs.setdefault("plugins", plugins)
        try:
            return super().instantiate_trainer(**kwargs)
        except RuntimeError as err:
            if "more than one stateful callback" not in str(err):
                raise
            kind = str(err).split("`")[1] if "`" in str(err) else "callback"
            hint = ""
            if kind == "EarlyStopping":
                monitor = self._section(self.config)["early_stopping"]["monitor"]
                hint = (f" (an EarlyStopping on {monitor} is there already: change it with --early_stopping.patience"
                        " / .monitor / .mode instead of adding another)")  # fmt: skip
            raise ConfigError(
                f"trainer.callbacks: two {kind} callbacks would keep the same state in a checkpoint{hint}"
            ) from None
        except (MisconfigurationException, ValueError, TypeError, ModuleNotFoundError) as err:
            # An impossible request (no such accelerator, too many devices, a precision the device lacks).
            raise ConfigError(f"trainer: {first_line(err, 1000)} ({available_hardware()})") from None


def user_error(err: ValueError) -> Exception:
    """The reason inside jsonargparse's wrapper: a class chosen by class_path (the task, its net, the data) is
    tried against its Union type, and what its constructor raised comes back as "Does not validate against any
    of the Union subtypes" with the reason nested inside. The user's mistake, a UserError or a constructor's
    ValueError, is what the command line prints; anything else keeps its traceback."""
    chain, seen = [], err
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for found in chain:
        if isinstance(found, UserError):
            return found
    innermost = chain[-1]
    if "Union subtypes" in str(err) and isinstance(innermost, ValueError):
        return ConfigError(first_line(innermost, 1000))
    return err


def _on_cpu(trainer) -> bool:
    """Whether a trainer config runs on the CPU: asked to, or ``auto`` on a machine with no GPU or MPS."""
    accelerator = str(trainer.get("accelerator") or "auto")
    return accelerator == "cpu" or (accelerator == "auto" and not _has_accelerator())


def _has_accelerator() -> bool:
    """A CUDA GPU or Apple's MPS, which Lightning's ``accelerator: auto`` would choose over the CPU."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def available_hardware() -> str:
    """What this machine offers, for error messages."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    gpu = f"{gpus} CUDA GPU(s): {', '.join(names)}" if gpus else "no CUDA GPU"
    # float16 autocast is the GPU's (Lightning falls back to bf16-mixed on the CPU)
    precisions = PRECISIONS if _has_accelerator() else tuple(p for p in PRECISIONS if p != "16-mixed")
    return f"this machine: accelerator cpu ({os.cpu_count()} cores), {gpu}; precision {', '.join(precisions)}"


def _namespace_path(config, parts: list[str]) -> str | None:
    """The dotted key in ``config`` of a command-line option's parts (``model.beam_width`` is
    ``model.init_args.beam_width`` there: ``init_args`` levels put in where the option leaves them out); None
    when the config holds no such key."""
    path, node = [], config
    for part in parts:
        if part != "init_args" and isinstance(node, Namespace) and part not in node and "init_args" in node:
            path.append("init_args")
            node = node["init_args"]
        if not isinstance(node, Namespace) or part not in node:
            return None
        path.append(part)
        node = node[part]
    return ".".join(path)


def _img_size(data) -> int | None:
    return getattr(data, "img_size", None)


def _net_input(net) -> dict | None:
    """timm's data config for a ``TimmNet`` (from its name and weights file, without building it); None for
    nets that take the data as it is."""
    if net is None or not str(net.get("class_path", "")).endswith("TimmNet"):
        return None
    from lit_models.image_nets import timm_data_config

    init = net.get("init_args") or {}
    return timm_data_config(init.get("name"), init.get("weights_file"))
