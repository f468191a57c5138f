"""``archbench compare``: every listed model x seed, same data, same budget, one table.

Each run is an ordinary ``fit`` + ``test`` through :class:`ExperimentCLI`. Configs apply in this order, later
winning: ``experiments/base.yaml``, the comparison's modality base (``experiments/<modality>/base.yaml``), the
comparison file's shared ``config``, the model's own file, then the user's ``--data.* / --model.* /
--trainer.*`` options. The modality base is the comparison's, not a row's: every row gets it, a row from a file
outside ``experiments/`` too, and rows whose files would load different bases are refused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import textwrap
import traceback
import warnings
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import yaml
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch.callbacks import ThroughputMonitor, Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from archbench.errors import ConfigError, DataError, EmptySplitError, RunsFailedError, UserError
from datamodules.files import check_folder, data_fingerprints, write_atomic
from experiments.callbacks import FlopsBudget, PeakMemory, batch_items, batch_size
from experiments.cli import ExperimentCLI
from experiments.configs import (
    EXPERIMENTS,
    CommandParser,
    bases_of,
    did_you_mean,
    either_spelling,
    finite_float,
    flatten,
    from_command_line,
    key_hint,
    key_line,
    lightning_quiet,
    one_line,
    parse_file,
    plain_config,
    said_key,
    split_options,
    where_set,
    with_built_values,
)
from experiments.launchers import (
    LAUNCHERS,
    Failure,
    SlurmOptions,
    failure_reason,
    launch_local,
    launch_slurm,
    parse_devices,
    serve,
)
from experiments.loggers import AutoWandbLogger, discard_run, wandb_mode
from experiments.provenance import code_version, provenance
from experiments.report import summarize, write_outputs
from experiments.resume import WANDB_ID_KEY, as_saved, checkpoint_info, keep_metrics, open_quietly
from experiments.sweep import LoggedMetric
from experiments.tuning import (
    TUNE_JOB,
    check_tuning,
    row_sweep,
    trials_left,
    tune_dir,
    tune_row,
    tune_rows,
    tuning_of,
)


@dataclass
class Comparison:
    """A comparison file: which models, how many seeds, where the results go.

    Args:
        models: Row name -> the model's config file (relative to the comparison file).
        name: The comparison's name: the W&B group of its runs.
        seeds: Seeds per model (0..N-1); the table shows mean ± std over them.
        out: Output folder: results.json, results.md, comparison.png, one folder per run.
        project: W&B project.
        metric: The table's main metric (its first column and the plot).
        config: Settings every run shares: config files (relative to the comparison file) and/or settings, in
            order; they win over the modality's base and lose to the model's file.
        throughput_window: Training batches Lightning's ThroughputMonitor averages the throughput over.
        validate: Also evaluate each run's best checkpoint on the validation split, and show those metrics
            (``val/...``) in the table beside the test ones: for data whose test split differs on purpose (the
            algorithmic tasks test on longer sequences than they train and validate on).
        budget_flops: Train every row for this many training FLOPs (forward and backward, counted by
            ``FlopCounterMode`` on one batch) instead of the same steps or epochs: each row's ``max_steps`` is
            computed from its own cost (``experiments.callbacks.FlopsBudget``). Empty: the configs' budget.
        launcher: Where the runs execute: ``sequential`` (one after another, in this process), ``local`` (a
            pool of worker processes, one per device of ``devices``) or ``slurm`` (a job array through
            submitit, resources from ``slurm``). See ``experiments.launchers``.
        devices: For ``local``: device numbers, one worker each (``0,1,2,3``: a GPU each; on CPU the cores are
            split between the workers; a bare number N: N workers).
        slurm: For ``slurm``: the jobs' resources (``experiments.launchers.SlurmOptions``: partition, time_min,
            account, nodes, gpus_per_node, tasks_per_node, cpus_per_task, mem_gb, array_parallelism, qos,
            constraint, setup), and ``cluster: local`` to run the array with submitit's LocalExecutor instead.
        tune: Tune every row with the same trial budget before its seeds run, each row's best settings then
            training all of its seeds: ``space`` (as a sweep file's), ``trials`` (per row, 8), ``metric``
            (default: ``metric`` at validation), ``direction``, ``pruner``, ``threshold``, ``seed``. See
            ``experiments.tuning``.
        path: Set when loaded: the comparison file.
    """

    models: dict[str, str]
    name: str = "comparison"
    seeds: int = 3
    out: str = "runs/compare"
    project: str = "archbench"
    metric: str = "test/pearson"
    config: list[str | dict] | str | dict = field(default_factory=list)
    throughput_window: int = 100
    validate: bool = False
    budget_flops: float | None = None
    launcher: str = "sequential"
    devices: str | None = None
    slurm: dict | None = None
    tune: dict | None = None
    path: Path | None = None
    bases: list[Path] = field(default_factory=list, init=False)  # the modality base(s) every row loads

    def _row_bases(self, model: str) -> list[Path]:
        """The modality bases one row's files build on alone (the comparison file, the shared files, its own)."""
        files = [self.path, *(e for e in self.shared() if isinstance(e, Path)), self.model_file(model)]
        return list(dict.fromkeys(base for f in files for base in bases_of(f)))

    def _check_bases(self) -> None:
        """One modality base for every row, so every row trains on the same data and budget rule (epochs,
        validation interval); a row whose files are outside ``experiments/`` gets the others' base."""
        own = {model: self._row_bases(model) for model in self.models}
        chains = {tuple(bases) for bases in own.values() if bases}
        if len(chains) > 1:
            said = "; ".join(
                f"{', '.join(m for m, b in own.items() if tuple(b) == chain)}: {', '.join(map(str, chain))}"
                for chain in chains
            )
            raise ConfigError(
                f"{self.path}: models: the rows load different modality bases ({said}), so they would train on "
                "other data or budgets; compare rows of one modality (a file outside experiments/ gets the "
                "others' base)"
            )
        self.bases = list(next(iter(chains), ()))

    def without_own_base(self) -> list[str]:
        """The rows that get the comparison's modality base though their own files do not load it."""
        return [m for m in self.models if self.bases and self._row_bases(m) != self.bases]

    @classmethod
    def parser(cls) -> ArgumentParser:
        parser = ArgumentParser(prog="archbench compare", exit_on_error=False, default_env=False)
        parser.add_class_arguments(cls, skip={"path", "bases"})
        return parser

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        path = Path(path)
        _refuse_rows_of_several_files(path)
        comparison = cls(**parse_file(cls.parser(), path, cls), path=path)
        comparison._check()
        return comparison

    def _check(self) -> None:
        if not self.models:
            raise ConfigError(f"{self.path}: 'models' must map row names to config files")
        # a YAML key may be a number (1: a.yaml)
        self.models = {str(name): file for name, file in self.models.items()}
        folded: dict[str, str] = {}  # each row's name in one case: the first row named so
        for name, file in self.models.items():
            # a row's name is its runs' folder (runs/NAME-seedK; "ViT-S/14" a folder in a folder): "../x" would
            # write outside the output folder, "x/../GRU" in another row's
            parts = re.split(r"[/\\]", name)
            if not name.strip() or not name.isprintable() or any(not p or p.startswith(".") for p in parts):
                raise ConfigError(
                    f"{key_line(self.path, 'models', name)}: models: the row name {name!r} names its runs' folders "
                    "(runs/NAME-seed0), which stay in the output folder: no part between slashes may be empty or "
                    "start with '.'"
                )
            # trial 34: "LSTM " beside "LSTM", and "lstm": two rows that look one in the table, and one folder on a
            # case-insensitive filesystem (macOS, Windows)
            if name != name.strip():
                raise ConfigError(f"{key_line(self.path, 'models', name)}: models: the row name {name!r} begins or "
                                  "ends with a space, which the table does not show; take it out")  # fmt: skip
            twin = folded.setdefault(name.casefold(), name)
            if twin != name:
                raise ConfigError(f"{key_line(self.path, 'models', name)}: models: the row names {twin!r} and {name!r} "
                                  "differ only in case: one folder on macOS and Windows; name them apart")  # fmt: skip
            if not self.model_file(name).is_file():
                raise ConfigError(
                    f"{key_line(self.path, 'models', name)}: models.{name}: file {file!r} not found (looked at "
                    f"{self.model_file(name)})"
                )
        self._check_bases()
        if self.seeds < 1:
            raise ConfigError(
                f"{key_line(self.path, 'seeds')}: seeds: {self.seeds!r} is not a positive integer"
            )
        if self.budget_flops is not None and not self.budget_flops > 0:
            raise ConfigError(
                f"{key_line(self.path, 'budget_flops')}: budget_flops: {self.budget_flops:g} is not a positive number"
            )
        if self.launcher not in LAUNCHERS:
            raise ConfigError(
                f"{key_line(self.path, 'launcher')}: launcher: {self.launcher!r} is not one of {', '.join(LAUNCHERS)}"
            )
        if not self.metric.startswith(("test/", "val/") if self.validate else "test/"):
            raise ConfigError(
                f"{key_line(self.path, 'metric')}: metric: {self.metric!r} is not a test metric (test/...)"
                + ("" if self.validate else "; val/... needs validate: true")
            )
        self.slurm_options()  # unknown keys are named now, not when the jobs are submitted
        tuning = tuning_of(self)
        if tuning is not None:  # the search space is checked now, not after the first row's trials
            row_sweep(self, next(iter(self.models)), tuning)
        if self.throughput_window < 2:
            raise ConfigError(
                f"{key_line(self.path, 'throughput_window')}: throughput_window: {self.throughput_window} is below 2"
            )
        for entry in self.shared():
            if isinstance(entry, Path) and not entry.is_file():
                raise ConfigError(f"{self.path}: config: file {entry.name!r} not found (looked at {entry})")

    def slurm_options(self) -> tuple[SlurmOptions, str | None]:
        """The ``slurm`` section as submitit's options, and the cluster (None: SLURM; ``local``)."""
        section = dict(self.slurm or {})
        cluster = section.pop("cluster", None)
        if cluster not in (None, "slurm", "local"):
            raise ConfigError(f"{self.path}: slurm.cluster: {cluster!r} is not slurm or local")
        keys = ["cluster", *(f.name for f in fields(SlurmOptions))]
        for name in section:
            if name not in keys:  # named with its line, and the close option (or every option)
                raise ConfigError(
                    f"{key_line(self.path, 'slurm', name)}: slurm.{name}: not an option ({key_hint(name, keys)})"
                )
        return SlurmOptions(**section), None if cluster == "slurm" else cluster

    def run_dir(self, model: str, seed: int) -> Path:
        """A run's folder; for a launcher's tuning job (``TUNE_JOB``), the row's tuning folder."""
        if seed == TUNE_JOB:
            return tune_dir(self, model)
        return Path(self.out) / "runs" / f"{model}-seed{seed}"

    def model_file(self, model: str) -> Path:
        return (self.path.parent / self.models[model]).resolve()

    def row(self, model: str) -> str:
        """How a message names a row: the comparison file, the row and its model file."""
        return f"{self.path}: models.{model} ({self.models[model]})"

    def shared(self) -> list[Path | dict]:
        entries = self.config if isinstance(self.config, list) else [self.config]
        return [(self.path.parent / e).resolve() if isinstance(e, str) else e for e in entries]

    def run_args(self, model: str, tuned: bool = True) -> list[str]:
        """The ``--config`` options of one run: the comparison's modality base first (every row's, so the
        shared settings win over it), the shared settings, the model's file, and (``tuned``, with a ``tune``
        section) the row's best settings from its tuning."""
        args = [a for base in self.bases for a in ("--config", str(base))]
        for entry in self.shared():
            args += ["--config", str(entry) if isinstance(entry, Path) else yaml.safe_dump(entry)]
        args += ["--config", str(self.model_file(model))]
        if tuned and self.tune is not None:
            best = tune_dir(self, model) / "best.yaml"
            if not best.is_file():
                raise ConfigError(f"{self.path}: tune: row {model!r} is not tuned yet ({best} missing); run the "
                                  "comparison without --run, which tunes every row first")  # fmt: skip
            args += ["--config", str(best)]
        return args


def file_keys() -> str:
    """The comparison file's keys as they are written in it (``KEY: value``), each with its default and what it
    does, from ``Comparison``'s docstring (jsonargparse's own help would show them as ``--flags``)."""
    from docstring_parser import parse  # jsonargparse's [signatures] extra reads the docstrings with it

    documented = {p.arg_name: p.description for p in parse(Comparison.__doc__).params}
    # a key not documented yet is listed all the same
    said = {
        f.name: " ".join(documented.get(f.name, "").replace("``", "").split()) for f in fields(Comparison)
    }
    lines = []
    for f in fields(Comparison):
        if f.name in ("path", "bases"):  # set when loaded, not written
            continue
        if f.default is not MISSING:
            default = (
                "empty" if f.default is None else yaml.safe_dump(f.default, default_flow_style=True).strip()
            )
            default = default.removesuffix("\n...").strip()
        else:
            default = "required" if f.default_factory is MISSING else "empty"
        lines.append(textwrap.fill(f"{f.name}: {said[f.name]} ({default})", width=100, initial_indent="  ",
                                   subsequent_indent="      "))  # fmt: skip
    return "\n".join(lines)


def command_parser() -> CommandParser:
    parser = CommandParser(
        prog="archbench compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every model of a comparison file x seed on the same data and budget; write "
        "results.json, results.md and comparison.png. Other options (--data.*, --model.*, --trainer.*) go to "
        "every run, as for 'fit'.",
        epilog="A comparison file is YAML with these keys (KEY: value; the default last, in parentheses):\n"
        + file_keys(),
    )
    parser.add_argument("--config", required=True, help="comparison file, e.g. experiments/dna/compare.yaml")
    parser.add_argument("--seeds", type=int, help="seeds per model (0..N-1); overrides the file")
    parser.add_argument("--out", help="output folder; overrides the file")
    parser.add_argument("--models", help="comma-separated subset of the file's models")
    parser.add_argument(
        "--budget_flops",
        type=finite_float,
        help="train every row for this many training FLOPs (e.g. 2e14); overrides the file",
    )
    parser.add_argument("--launcher", choices=LAUNCHERS, help="where the runs execute; overrides the file")
    parser.add_argument("--devices", help="local launcher: device numbers, one worker each, e.g. 0,1,2,3")
    parser.add_argument("--run", help="one run only, MODEL:SEED (what a SLURM job of the launcher runs)")
    parser.add_argument(
        "--serve", action="store_true", help="a local launcher's worker: runs read from stdin"
    )
    return parser


def _build(args: list[str], parse_only: bool = False) -> ExperimentCLI:
    """A run's model, data and trainer, built from its options (nothing trains); or, ``parse_only``, its options
    parsed and checked."""
    with warnings.catch_warnings():
        # Passing args while sys.argv holds the compare command is intended here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return ExperimentCLI(args=args, run=False, parse_only=parse_only)


def check_rows(comparison: Comparison, overrides: list[str]) -> None:
    """Every row's options parsed and checked before any trains: a row that would not build (no datamodule, an
    unknown option, a bad value) stops the comparison now, named, not after the rows before it have trained.
    Parsed, not built: building reads each row's data (the links to the net read the data's sizes and
    statistics, train a tokenizer) and loads pretrained weights, and a launcher's jobs may build where this
    process cannot (a GPU trainer, data on the compute nodes). What the constructors check (a missing data file,
    a top_k above the experts, a width the heads do not divide) stops the comparison when that row's run starts,
    named the same way (``run_one``); the rows before it are kept."""
    from jsonargparse import ArgumentError

    _refuse_shared_net_options(comparison)
    parsed = {}
    with lightning_quiet():  # the trainer's and the seed's notes are said again when each run starts
        for model in comparison.models:
            where = comparison.row(model)
            try:
                args = [*comparison.run_args(model, tuned=False), "--trainer.logger=false"]
                parsed[model] = [_build([*args, *overrides], True).config]
                if overrides and len(comparison.models) > 1:  # and as the files alone set it, to compare
                    parsed[model].append(_build(args, True).config)
            except ArgumentError as err:
                raise ConfigError(
                    _named(comparison, model, one_line(err), [*args, *overrides], overrides)
                ) from None
            except UserError as err:
                raise type(err)(f"{where}: {err}") from None
    if overrides and len(parsed) > 1:
        _say_flattened(
            comparison, {m: [_settings(c) for c in configs] for m, configs in parsed.items()}, overrides
        )


def _shared_settings(comparison: Comparison) -> list[tuple[Path | None, dict]]:
    """(file or None for the inline mapping, settings) of each entry of the comparison's ``config:``; a file
    that does not parse, or is no mapping, is left to the rows' check to say."""
    found = []
    for entry in comparison.shared():
        try:
            settings = yaml.safe_load(entry.read_text()) if isinstance(entry, Path) else entry
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(settings, dict):
            found.append((entry if isinstance(entry, Path) else None, settings))
    return found


def _refuse_shared_net_options(comparison: Comparison) -> None:
    """A net's option among the comparison's shared settings (``model.net.init_args.nhead: 5``) comes before the
    rows' model files, which choose the net: the parser cannot take an option of a class not chosen yet, and
    would blame the row's file ("Option 'nhead' is not accepted"). Said at the shared setting instead, with
    where it works."""
    shared = [
        (file, {re.sub(r"^model\.init_args\.", "model.", k): v for k, v in flatten(settings).items()})
        for file, settings in _shared_settings(comparison)
    ]
    if any("model.net" in flat or "model.net.class_path" in flat for _, flat in shared):
        return  # the shared settings choose the net too (one entry of them, before or after the option)
    for file, flat in shared:
        for key, value in flat.items():
            if key.startswith("model.net."):
                where = (
                    key_line(file, *key.split("."))
                    if file
                    else f"{key_line(comparison.path, 'config')}: config"
                )
                raise ConfigError(
                    f"{where}: {key}: a net's option cannot be shared here: the shared settings come before each "
                    f"row's model file, which chooses the net; give it to every row on the command line "
                    f"(--{key}={json.dumps(value)}) or in each row's model file"
                )


def _say_bounds_given_way(comparison: Comparison) -> None:
    """A step or epoch bound of the comparison's own ``config:`` settings gives way to ``budget_flops``: said,
    with its line, not dropped unsaid. A file that does not parse, or is no mapping, is the rows' check's to say."""
    for file, settings in _shared_settings(comparison):
        trainer = settings.get("trainer")
        for key in [k for k in ("max_steps", "max_epochs") if isinstance(trainer, dict) and k in trainer]:
            where = key_line(file, "trainer", key) if file else key_line(comparison.path, "config")
            print(f"warning: {where}: trainer.{key}: {trainer[key]} gives way to budget_flops "
                  f"{comparison.budget_flops:g}: each row's steps come from its cost")  # fmt: skip


def _refuse_rows_of_several_files(path: Path) -> None:
    """A row given a list of files (its own and a sweep's best.yaml, trial 34), which jsonargparse refused at the
    ``models:`` line as "Expected a str": said at the row's line, with what to do instead."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):  # said by the parser, with its line
        return
    rows = spec.get("models") if isinstance(spec, dict) else None
    for name, file in rows.items() if isinstance(rows, dict) else ():
        if isinstance(file, list):
            raise ConfigError(
                f"{key_line(path, 'models', str(name))}: models.{name}: a row is one config file, not a list "
                f"({len(file)} given); write the settings of the others into it (a sweep's best.yaml lists its "
                "tuned settings), or list the files every row shares under config:"
            )


def _named(comparison: Comparison, model: str, said: str, args: list[str], overrides: list[str]) -> str:
    """A refusal met parsing or building one row's run (``said``: ``KEY: ...``, as ``one_line`` or a constructor
    says it), named where the value came from: the comparison's own ``config:`` mapping, which every row reads
    (not this row's doing), or else the row, with the line of the file that set it (its model file, a shared
    file) or the command line that gave it to every row."""
    by_command = from_command_line(said, overrides, "every row")
    given = where_set(said, args)
    shared = None if given or by_command else _set_inline(comparison, said)
    if shared:
        named_key = "" if said.startswith(f"{shared}:") else f"{shared}: "
        return f"{key_line(comparison.path, 'config')}: config: {named_key}{said}"
    own = re.fullmatch(rf"{re.escape(str(comparison.model_file(model)))}:(\d+): ", given)
    if own:  # the row's own file: its line beside the file's name as the comparison wrote it
        return f"{comparison.path}: models.{model} ({comparison.models[model]}:{own.group(1)}): {said}{by_command}"
    return f"{comparison.row(model)}: {given}{said}{by_command}"


def _set_inline(comparison: Comparison, said: str) -> str | None:
    """The key of the comparison's inline ``config:`` settings that a message concerns (a constructor's
    ``data.val_fraction: 1.5 is outside [0, 1)``, a misspelt ``trainer: {max_epochss: 1}``: "Group 'trainer' does
    not accept option 'max_epochss'"), or None."""
    keys = [key for entry in comparison.shared() if isinstance(entry, dict) for key in flatten(entry)]
    plain = said_key(said)
    return next(
        (
            k
            for k in keys
            if k.replace(".init_args.", ".") == plain
            or f"option '{k.rsplit('.', 1)[-1]}'".lower() in said.lower()
        ),  # fmt: skip
        None,
    )


def _settings(config) -> dict[str, str]:
    """A parsed run config as ``key: value`` text (nested keys joined by dots; the config files aside)."""
    given = {k: v for k, v in config.as_dict().items() if k not in ("config", "__path__")}
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in flatten(given).items()}


def _say_flattened(
    comparison: Comparison, settings: dict[str, list[dict[str, str]]], overrides: list[str]
) -> None:
    """A command-line option that gives every row the same value of a setting their model files set apart (the
    scratch row's ``init_from`` and the pre-trained row's, say) removes the difference the comparison is about:
    said before anything trains, naming the setting and each row's own value."""
    rows = list(settings)
    shared = set.intersection(*(set(given) & set(own) for given, own in settings.values()))
    for key in sorted(shared):
        given = {settings[m][0][key] for m in rows}
        own = {m: settings[m][1][key] for m in rows}
        if len(given) == 1 and len(set(own.values())) > 1:
            values = "; ".join(f"{m}: {v}" for m, v in own.items())
            print(f"warning: compare: the command line ({' '.join(overrides)}) sets {key} to {given.pop()} in "
                  f"every row, where the rows' own files set it apart ({values}): the rows no longer differ "
                  "there; to change one row, give it in that row's model file", file=sys.stderr)  # fmt: skip


def _data_files(config, out: Path | None = None) -> dict[str, str]:
    """The files the run's data and model settings name (data, weights) and the folders they read as data,
    each with its fingerprint; the comparison's output ``out`` is left out of a folder that holds it."""
    plain = plain_config(config)
    return data_fingerprints([plain.get("data"), plain.get("model")], exclude=out)


DATA_FILE = "# data file: "


def _changed_files(before: str, now: str) -> list[str] | None:
    """The data files and folders whose fingerprints differ between two settings texts; None if other settings
    do. A path fingerprinted on one side only (a folder, which earlier versions did not fingerprint) is not a
    change."""
    before, now = _rooted(before), _rooted(now)
    strip = [[line for line in text.splitlines() if not line.startswith(DATA_FILE)] for text in (before, now)]
    if strip[0] != strip[1] and not _same_but_newer(*strip):
        return None
    files = [
        dict(_path_and_mark(line) for line in text.splitlines() if line.startswith(DATA_FILE))
        for text in (before, now)
    ]
    return [path for path in files[0].keys() & files[1].keys() if files[0][path] != files[1][path]]


def _saved_root(settings: Path, run_dir: Path) -> str | None:
    """The run's folder as its settings file spells it, where that is another spelling of ``run_dir``."""
    try:
        saved = re.search(r"^\s*default_root_dir: (.+)$", settings.read_text(), flags=re.MULTILINE)
    except OSError:
        return None
    folder = yaml.safe_load(saved[1]) if saved else None
    if (
        isinstance(folder, str)
        and folder != str(run_dir)
        and os.path.realpath(folder) == os.path.realpath(run_dir)
    ):
        return folder
    return None


def _rooted(settings: str) -> str:
    """Settings with the run's folder (``default_root_dir``) as an absolute path: runs of earlier versions of the
    sequential launcher saved it as written (``out/cmp``), the same folder (trial 27: a re-run of a local
    launcher's relative --out was refused as other settings)."""

    def absolute(line: re.Match) -> str:
        folder = yaml.safe_load(line[2])
        return line[1] + os.path.realpath(folder) if isinstance(folder, str) else line[0]

    return re.sub(r"^(\s*default_root_dir: )(.+)$", absolute, settings, flags=re.MULTILINE)


def _same_but_newer(before: list[str], now: list[str]) -> bool:
    """Settings lines that differ only by options the model's or data's classes gained since ``before`` was
    written, at their defaults: the same run, which trained as the default does (resume's rule, ``as_saved``),
    so a comparison folder of an earlier version keeps its finished runs."""
    if [line for line in before if line.startswith("#")] != [line for line in now if line.startswith("#")]:
        return False
    try:
        old, new = yaml.safe_load("\n".join(before)), yaml.safe_load("\n".join(now))
    except yaml.YAMLError:
        return False
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    return old == {**new, **{k: as_saved(old.get(k), new[k]) for k in ("model", "data") if k in new}}


def _first_difference(before: str, now: str) -> str:
    """The first settings line that differs, as it was and as it is now (the lines of a YAML dump)."""
    old, new = before.splitlines(), now.splitlines()
    k = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    was = old[k].strip() if k < len(old) else "(nothing)"
    is_now = new[k].strip() if k < len(new) else "(nothing)"
    return f"line {k + 1} was {was!r}, is {is_now!r} now"


def _path_and_mark(line: str) -> tuple[str, str]:
    """A settings line's path and fingerprint; a big file's fingerprint of earlier versions was two words
    (``size:N mtime_ns:T``), read as today's one (``size:N,mtime_ns:T``)."""
    path, mark = line.removeprefix(DATA_FILE).rsplit(" ", 1)
    head, _, size = path.rpartition(" ")
    if mark.startswith("mtime_ns:") and size.startswith("size:"):
        path, mark = head, f"{size},{mark}"
    return path, mark


def _finished_elsewhere(
    comparison: Comparison, others: dict[str, str], out: Path, overrides: list[str], left_out: list[dict]
) -> list:
    """The finished runs (a ``result.json``) of rows ``--models`` left out, kept as a re-run keeps them (their
    settings checked); a row whose settings differ stays out of the table, and that is said (and added to
    ``left_out``, for the table's note)."""
    chosen, kept = comparison.models, []
    comparison.models = {**chosen, **others}
    try:
        for model in others:
            for seed in range(comparison.seeds):
                if (comparison.run_dir(model, seed) / "result.json").is_file():
                    try:
                        kept.append(run_one(comparison, model, seed, out, overrides))
                    except (UserError, ArgumentError) as err:  # never the chosen rows' results lost for it
                        why = one_line(str(err))
                        print(f"{model}, seed {seed}: left out of the table: {why}")
                        left_out.append({"model": model, "seed": seed, "why": f"left out: {why}"})
    finally:
        comparison.models = chosen
    return kept


def _refuse_model_for_models(comparison: Comparison, overrides: list[str]) -> None:
    """``--model CNN`` (for ``--models CNN``) is a run option, the task class of every row: the first row's
    parser refused it as "Expected a path but CNN either not accessible" (trial 22). Said as what it likely is."""
    for i, arg in enumerate(overrides):
        name, _, value = arg.partition("=")
        if name != "--model":
            continue
        value = value or (overrides[i + 1] if i + 1 < len(overrides) else "")
        rows = [v for v in value.split(",") if v]
        if rows and all(row in comparison.models for row in rows):
            raise ConfigError(
                f"compare: --model {value} sets every row's task (model), not the rows to run: did you mean --models "
                f"{value}?"
            )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def run_one(comparison: Comparison, model: str, seed: int, out: Path, overrides: list[str]) -> dict:
    run_dir = comparison.run_dir(model, seed)
    args = [*comparison.run_args(model), *overrides]
    # a run begun by an earlier version under another spelling of its folder (out/cmp/..., a link) resumes under
    # that spelling: Lightning's ModelCheckpoint forgets its best score when the folder's string changed
    root = _saved_root(run_dir / "run_config.yaml", run_dir) or run_dir
    args += [f"--seed_everything={seed}", f"--trainer.default_root_dir={root}", "--trainer.logger=false"]
    # A re-run on the same folder keeps finished runs and resumes unfinished ones, if the settings are the same.
    settings, done, last = (
        run_dir / "run_config.yaml",
        run_dir / "result.json",
        run_dir / "checkpoints" / "last.ckpt",
    )
    # a finished run's settings are checked, nothing is built; what only the constructors check (check_rows
    # parsed) is named as check_rows names it
    try:
        with warnings.catch_warnings(record=True) as said:
            cli = _build(args, parse_only=done.is_file())
            if (
                not done.is_file()
            ):  # a run that trains: as fit refuses it (a finished run's table is redrawn anywhere)
                cli.refuse_fp16_on_cpu()
    except UserError as err:
        raise type(err)(_named(comparison, model, str(err), args, overrides)) from None
    finally:  # a constructor's warning of a setting (model.net.init_args.window: ...): named as its errors are
        for w in said:
            if said_key(str(w.message)) and str(w.message).startswith(("model.", "data.", "trainer.")):
                print(f"warning: {_named(comparison, model, str(w.message), args, overrides)}")
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    dumped = cli.parser.dump(cli.config, skip_unset=False, skip_validation=True)  # checked when parsed
    # The comparison's own settings that change what a run does (not in the run's config); written only when
    # set, so that folders of comparisons without them still resume
    if comparison.budget_flops is not None or comparison.validate:
        dumped += f"# compare: budget_flops={comparison.budget_flops}, validate={comparison.validate}\n"
    # A data file or folder changed in place (same path, other contents) is other settings too; a fingerprint
    # only one side has is no change, so that folders of runs of earlier versions still resume
    dumped += "".join(f"{DATA_FILE}{path} {mark}\n" for path, mark in _data_files(cli.config, out).items())
    before = settings.read_text() if settings.is_file() else dumped
    changed = _changed_files(before, dumped)
    if (changed or changed is None) and not done.is_file() and not last.is_file():
        # nothing to keep or resume (the run failed before its first save): it starts again with these settings
        print(f"{model}, seed {seed}: began earlier with other settings and saved nothing; starting again")
    elif changed:
        kind = "data folder" if all(Path(p).is_dir() for p in changed) else "data file"
        raise ConfigError(
            f"{run_dir}: {kind} {', '.join(sorted(changed))} changed since this run was made (see {settings.name} "
            "there); give another --out, or delete the folder to train it again"
        )
    elif changed is None:
        # with tune, more trials can find another best: the row's seeds trained with the one before (trial 20)
        tuned = (
            f"; the row's tuning may have found another best since (its {tune_dir(comparison, model) / 'best.yaml'}),"
            f" which this run did not train with"
            if comparison.tune is not None
            else ""
        )
        raise ConfigError(
            f"{run_dir}: this run was made with other settings than this command's ({_first_difference(before, dumped)}"
            f"; see {settings.name} there{tuned}); give another --out, or delete the folder to train it again"
        )
    if done.is_file():
        print(f"{model}, seed {seed}: finished earlier, kept ({done})")
        return _check_metric(comparison, _read_result(done), done)
    if cli.trainer.is_global_zero:
        write_atomic(settings, dumped)
    resume = str(last) if last.is_file() else None
    stale = sorted((run_dir / "checkpoints").glob("*.ckpt")) if resume is None else []
    if stale and cli.trainer.is_global_zero:  # an earlier attempt's, beside which the new run's would pile up
        print(f"{model}, seed {seed}: no last.ckpt to resume from; starting again without the earlier attempt's "
              f"{', '.join(p.name for p in stale)}")  # fmt: skip
        for path in stale:
            path.unlink()
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    wandb_logger = AutoWandbLogger(
        project=comparison.project,
        save_dir=str(out),
        group=comparison.name,
        name=f"{model}-seed{seed}",
        tags=[model, f"seed{seed}"],
        job_type="train",
        id=checkpoint_info(last, "compare", "delete it to train that run again")[WANDB_ID_KEY]
        if resume
        else None,
    )
    trainer.loggers = [CSVLogger(str(run_dir), name="", version=""), wandb_logger]
    # Every row measured the same way: Lightning's Timer and ThroughputMonitor, and the peak memory they lack.
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, ThroughputMonitor | Timer)]
    timer, memory = Timer(verbose=False), PeakMemory()
    throughput = ThroughputMonitor(
        batch_size_fn=batch_size, length_fn=batch_items, window_size=comparison.throughput_window
    )
    # A metric the runs do not log stops the comparison at this run's first validation, before a step trains
    metric = comparison.metric.replace("test/", "val/", 1)
    said = f"{key_line(comparison.path, 'metric')}: metric: " + (
        f"{comparison.metric!r}: " if metric != comparison.metric else ""
    )
    trainer.callbacks += [timer, throughput, memory, LoggedMetric(metric, said)]
    budget = (
        FlopsBudget(comparison.budget_flops, f"{comparison.row(model)}: ")
        if comparison.budget_flops
        else None
    )
    if budget is not None:
        trainer.callbacks.append(budget)
    config = with_built_values(plain_config(cli.config), cli.model, cli.datamodule)
    if trainer.is_global_zero:
        wandb_logger.log_hyperparams({"config": config, "model_name": model, "seed": seed})
    if resume:
        print(f"{model}, seed {seed}: resuming from {resume}")
        if trainer.is_global_zero:  # the curve in comparison.png reads metrics.csv from the first step
            keep_metrics(trainer.loggers[0], int(checkpoint_info(resume)["global_step"]))
    elif trainer.is_global_zero:
        open_quietly(trainer.loggers[0])  # the run folder holds its settings file, no log yet
    try:
        # the data read and checked as fit does it (a val_check_interval past an epoch's batches: trial 31 met
        # Lightning's own refusal, in each of the rows' runs), before a step trains; a resumed run was checked
        # when it began (and its init_from weights, read then, need not be on disk now)
        if resume is None:
            cli.check_data_first("fit")
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
    except Exception as err:  # the W&B run ends failed, not left open for this process's next run to reuse
        # a setting or data mistake (not a loss gone NaN, whose logs tell what happened)
        mistake = (isinstance(err, ConfigError | DataError) and resume is None and trainer.global_step == 0
                   and not last.is_file())  # fmt: skip
        if trainer.is_global_zero:
            if mistake:
                # the user's mistake (a metric the runs do not log, a bad row in a data file), found before
                # anything was saved: the folder and the W&B run go, but for a launcher's log, which the
                # launcher's worker is writing and its report names
                discard_run(wandb_logger)
                for entry in run_dir.iterdir():
                    if entry.name != "launcher.log":
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                with contextlib.suppress(OSError):  # a launcher's other worker may write beside it
                    run_dir.rmdir()  # when empty
                    run_dir.parent.rmdir()  # runs/, when no other run is in it
            else:
                wandb_logger.experiment.finish(exit_code=1)
        if isinstance(err, UserError) and not str(err).startswith(str(comparison.path)):
            # which row met it, and where a setting it names came from (trial 31: a shared config: setting)
            named = type(err)(_named(comparison, model, str(err), args, overrides))
            named.during_training, named.origin = not mistake, err
            raise named from None
        err.during_training = not mistake  # the sequential launcher goes on past a run that failed training
        raise
    train_seconds = timer.time_elapsed("train")
    samples_per_sec = _logged_throughput(trainer)
    tokens_per_sec = (
        _logged_throughput(trainer, "items_per_sec") if getattr(module, "counts_tokens", False) else None
    )
    steps = trainer.global_step
    counts, flops = module.parameter_counts(), module.flops or {}
    trained_flops = module.flops_tally.total()  # before testing a checkpoint restores an earlier tally
    epochs = _epochs_trained(trainer)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback is not None else None
    try:
        results = trainer.test(
            module, datamodule=data, ckpt_path=best or None, verbose=False, weights_only=True
        )
    except EmptySplitError:
        if not comparison.validate:  # nothing would be compared
            raise
        results = []  # a comparison of validation metrics (validate: true) on data held out for validation only
    test = {k: float(v) for k, v in results[0].items()} if results else {}
    val = {}
    if comparison.validate:
        results = trainer.validate(
            module, datamodule=data, ckpt_path=best or None, verbose=False, weights_only=True
        )
        val = {k: float(v) for k, v in results[0].items()} if results else {}
    if trainer.is_global_zero:
        wandb_logger.experiment.summary.update(
            {**test, **{f"best/{k}": v for k, v in val.items()}, "train_seconds": train_seconds, "params_active": counts["params_active"],
             "flops_forward_per_example": (module.test_flops or flops).get("forward_per_example")}
        )  # fmt: skip
        wandb_logger.experiment.finish()
    result = {
        "model": model,
        "seed": seed,
        "params": counts["params"],
        "params_active": counts["params_active"],
        # counted by FlopCounterMode: the tested model's forward on the first test batch (the first training
        # batch's without a test); training FLOPs: forward and backward of each epoch's first batch times the
        # epoch's batches, summed (all processes)
        "flops_forward_per_example": (module.test_flops or flops).get("forward_per_example"),
        "flops_train": trained_flops * trainer.world_size if trained_flops is not None else None,
        **({"budget_flops": comparison.budget_flops, "budget_steps": budget.steps} if budget else {}),
        "test": test,
        "tested": "best" if best else "final",  # final: no validation ran, so no best checkpoint was saved
        **({"val": val} if val else {}),
        "train_seconds": train_seconds,
        "throughput": samples_per_sec,
        **({"tokens_per_sec": tokens_per_sec} if tokens_per_sec is not None else {}),
        "peak_memory_mb": memory.peak_mb,
        "peak_memory_of": memory.kind,
        "epochs": epochs,
        "steps": steps,
        "noise_ceiling": getattr(data, "noise_ceiling", None),
        "metrics_csv": str(run_dir / "metrics.csv"),
        "config": config,
        # a re-run keeps finished runs, so the table's runs may come from earlier commands and other code: each
        # says when and at which commit it was made (the provenance's times and commit are the latest command's)
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **code_version(),
    }
    if trainer.is_global_zero:
        write_atomic(done, json.dumps(result, indent=1) + "\n")
    return _check_metric(comparison, result, done)


def _read_result(done: Path) -> dict:
    """A finished run's result.json (written whole, by a rename), or a ConfigError naming it when something else
    damaged it: once it is deleted, the run resumes from its last checkpoint and is tested again."""
    try:
        result = json.loads(done.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{done}: damaged ({str(err).splitlines()[0]}); delete it and run again: that run resumes from its "
            "last checkpoint and is tested again, the others are kept"
        ) from None
    if not isinstance(result, dict) or not isinstance(result.get("test"), dict):
        raise ConfigError(
            f"{done}: not a run's result (no test metrics); delete it and run again: that run resumes from its "
            "last checkpoint and is tested again, the others are kept"
        )
    return result


def _check_metric(comparison: Comparison, result: dict, done: Path) -> dict:
    """The run's result, if it has the comparison's metric; else the comparison stops, the run kept for a re-run
    with the metric corrected."""
    logged = {**result.get("val", {}), **result["test"]}
    if comparison.metric not in logged:
        raise ConfigError(
            f"{key_line(comparison.path, 'metric')}: metric: {comparison.metric!r} is not among the metrics the "
            f"runs report ({', '.join(sorted(logged)) or 'none'}); this run is kept ({done})"
        )
    return result


def _epochs_trained(trainer) -> float:
    """Epochs of training data the run used, fractional when early stopping or ``max_steps`` ended it
    mid-epoch (``current_epoch`` counts an epoch that was stopped in as done)."""
    per_epoch = trainer.num_training_batches
    if not math.isfinite(per_epoch) or per_epoch <= 0:
        return float(trainer.current_epoch)
    return round(trainer.global_step * trainer.accumulate_grad_batches / per_epoch, 2)


def _logged_throughput(trainer, what: str = "samples_per_sec") -> float | None:
    """Training samples/s (or items/s: tokens for a language model) over all processes as ThroughputMonitor
    last logged it (None if it never did: fewer training batches than its window)."""
    logged = trainer.logged_metrics
    for key in (f"train/{what}", f"train/device/{what}"):
        if key in logged:
            value = float(logged[key])
            return value if key == f"train/{what}" else value * trainer.world_size
    return None


def main(argv: list[str]) -> None:
    own, overrides = split_options(argv)
    parser = command_parser()
    own = either_spelling(own, parser.own_options)  # --budget-flops for --budget_flops
    unknown = [
        a.split("=")[0] for a in own if a.startswith("--") and a.split("=")[0] not in parser.own_options
    ]
    if unknown:
        raise ConfigError(
            f"compare: unrecognized option {unknown[0]!r}{did_you_mean(unknown[0], parser.own_options)}: runs take "
            "--data.*, --model.*, --trainer.*, --early_stopping.*"
        )
    args = parser.parse_args(own)
    started = datetime.now(timezone.utc)
    comparison = Comparison.load(args.config)
    _refuse_model_for_models(comparison, overrides)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ConfigError(f"--seeds: {args.seeds} is not a positive integer")
        comparison.seeds = args.seeds
    if args.out:
        comparison.out = args.out
    # "~/runs" quoted (in the file, or --out=~/runs) reaches no shell: expanded here, or the loggers would expand it
    # and the checkpoints and W&B not (trial 12: a run split across two folders, then a traceback)
    comparison.out = os.path.expanduser(comparison.out)
    check_folder(comparison.out, "--out" if args.out else f"{key_line(comparison.path, 'out')}: out")
    # resolved once, here: the launchers' workers and jobs get this folder, and a run resumed by another launcher
    # than the one that began it must see the same checkpoint folder (Lightning's ModelCheckpoint forgets its best
    # score when the folder's spelling changed, and tested another checkpoint: trial 27)
    # as said to the user; then as the workers' --out (_child_argv) and slurm's folder are
    given_out = comparison.out
    comparison.out = os.path.realpath(comparison.out)
    if args.budget_flops is not None:
        if not args.budget_flops > 0:
            raise ConfigError(f"--budget_flops: {args.budget_flops:g} is not a positive number")
        comparison.budget_flops = args.budget_flops
    bound = next(
        (o for o in overrides if o.split("=")[0] in ("--trainer.max_steps", "--trainer.max_epochs")), None
    )
    # the budget sets every row's steps: the option would be dropped unsaid
    if comparison.budget_flops and bound:
        given = "--budget_flops" if args.budget_flops is not None else f"{comparison.path}: budget_flops"
        raise ConfigError(
            f"{bound.split('=')[0]}: {given} {comparison.budget_flops:g} sets each row's steps from its cost, in "
            "place of the configs' step and epoch bounds; give one of them"
        )
    if comparison.budget_flops:
        _say_bounds_given_way(comparison)
    if args.models is not None:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        if not wanted:  # "" or "," would run nothing (or, before, silently every row)
            raise ConfigError(
                f"--models: {args.models!r} names no model; {comparison.path} has {', '.join(comparison.models)}"
            )
        for m in wanted:
            if m not in comparison.models:
                # trial 34: 'cnn' for CNN, with no close name given
                same = [r for r in comparison.models if r.casefold() == m.casefold()]
                close = f" (did you mean {same[0]}?)" if same else did_you_mean(m, list(comparison.models))
                raise ConfigError(
                    f"--models: {m!r} is not in {comparison.path}{close} (has {list(comparison.models)})"
                )
        order = list(comparison.models)
        others = {m: f for m, f in comparison.models.items() if m not in wanted}
        comparison.models = {m: comparison.models[m] for m in wanted}
    # --devices '' too: refused below, not one worker unsaid (trial 27)
    for name in ("launcher", "devices"):
        if getattr(args, name) is not None:
            setattr(comparison, name, getattr(args, name))
    if comparison.launcher == "local":
        parse_devices(comparison.devices)  # its mistakes said now, not after the rows are tuned
    if args.devices is not None and comparison.launcher != "local":  # given, and nothing would read it
        raise ConfigError(
            f"--devices {args.devices}: only the local launcher takes devices, and this comparison's launcher is "
            f"{comparison.launcher} (add --launcher local, or leave --devices out)"
        )
    if comparison.launcher == "slurm" and not (args.run or args.serve):
        _, cluster = comparison.slurm_options()  # its mistakes said now, not after the tuning
        if cluster is None and shutil.which("sbatch") is None:  # submitit would say it in a traceback
            raise ConfigError(
                f"launcher slurm: no SLURM on this machine (no sbatch command); run on the cluster's login "
                f"node, or set slurm: {{cluster: local}} in {comparison.path} to run the jobs here with "
                "submitit's local executor, or use --launcher local"
            )
    out = Path(comparison.out)
    # the outermost folder of --out that this command makes: taken away again where a mistake stops it with the
    # folder still empty (trial 30: a metric the runs do not log left an empty --out folder behind)
    made = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    ours = any((out / d).is_dir() for d in ("runs", "tune", "slurm")) or any(out.glob("worker-*.log"))
    if not (args.run or args.serve) and out.is_dir() and any(out.iterdir()) and not ours:
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(f"--out {given_out}: a folder of other files ({shown}), not a comparison's: its results.json and "
                          "the like would be overwritten; give another --out")  # fmt: skip

    def run_job(model: str, seed: int) -> None:  # what a launcher's job does: train one seed, or tune the row
        if seed == TUNE_JOB:
            tune_row(comparison, model, overrides)
        else:
            run_one(comparison, model, seed, out, overrides)

    if args.run:  # one run, started by a launcher
        model, _, seed = args.run.rpartition(":")
        if model not in comparison.models or not (seed.isdigit() or seed == str(TUNE_JOB)):
            raise ConfigError(f"--run: {args.run!r} is not MODEL:SEED of {comparison.path}")
        run_job(model, int(seed))
        return
    if args.serve:  # a local launcher's worker
        serve(run_job, comparison.run_dir)
        return
    budget = (f", {comparison.budget_flops:.3g} training FLOPs per run in place of the epoch bound (each row's steps "
              "from its cost, said as it starts)" if comparison.budget_flops else "")  # fmt: skip
    print(
        f"compare: {_count(len(comparison.models), 'model')} x {_count(comparison.seeds, 'seed')} -> {out} (W&B "
        f"{wandb_mode()}, "
        f"launcher {comparison.launcher}{budget})"
    )
    modality_bases = [e for e in comparison.shared() if isinstance(e, Path) and e.name == "base.yaml"
                      and e.parent.parent == EXPERIMENTS]  # fmt: skip
    if not comparison.bases and not modality_bases:  # every file the user's own, none a modality's base
        # config: paths are read from the comparison file's folder: the project's, from there
        project = Path(os.path.relpath(EXPERIMENTS, comparison.path.resolve().parent))
        shown = project if not project.parts or project.parts[0] != ".." else EXPERIMENTS
        print("compare: no modality base: every file is outside experiments/, so the rows build on "
              f"experiments/base.yaml and these files alone (list {shown / '<modality>' / 'base.yaml'} under "
              "config: for a modality's defaults, its epoch bound and bucketing)")  # fmt: skip
    if comparison.without_own_base():
        print(f"compare: every row gets the modality base {', '.join(map(str, comparison.bases))}, also "
              f"{', '.join(comparison.without_own_base())}, whose files are outside experiments/")  # fmt: skip
    check_rows(comparison, overrides)
    jobs = [(model, seed) for model in comparison.models for seed in range(comparison.seeds)]
    child_argv = _child_argv(argv, comparison, out)
    if comparison.tune is not None:  # every row's space checked before any row tunes
        check_tuning(comparison, overrides)
    if comparison.tune is not None and comparison.launcher != "sequential":  # every row's tuning, at once
        # a row whose tuning is complete starts no job (trial 27: a worker each, to add nothing)
        pending = [m for m in comparison.models if trials_left(comparison, m)]
        failures = _dispatch(comparison, [(m, TUNE_JOB) for m in pending], child_argv)
        if failures:
            raise RunsFailedError(
                "compare: tuning failed, so no seed ran; run the same command again to resume it: "
                + "; ".join(map(str, failures))
            )
    tuned = tune_rows(comparison, overrides) if comparison.tune is not None else None  # the rest, or the best
    runs, failures = [], []
    if comparison.launcher == "sequential":
        for model, seed in jobs:
            print(f"\n=== {model}, seed {seed} ===", flush=True)
            try:
                runs.append(run_one(comparison, model, seed, out, overrides))
            except Exception as err:
                # a setting or data mistake found before anything trained (a weights file missing, a metric the
                # runs do not log) stops the comparison in one line; a run that failed while training (a loss
                # gone NaN, a bad row at step 500, a crash) is reported and the others go on, as with workers
                if isinstance(err, UserError) and not getattr(err, "during_training", False):
                    _remove_empty(out, made)
                    raise
                failures.append(_failed_here(comparison, model, seed, err))
    else:
        runs, failures = _launch(comparison, jobs, child_argv, out, overrides)
    if rank_zero_only.rank != 0:
        return  # only rank 0 writes results
    # the runs the table lacks, named under it (the console's lines scroll away)
    missing = [
        {"model": f.model, "seed": f.seed, "why": f"failed: {f.reason}; log: {f.log}"} for f in failures
    ]
    if (
        args.models
    ):  # the table keeps the file's other rows that finished here earlier: --models runs, not drops
        runs = sorted(runs + _finished_elsewhere(comparison, others, out, overrides, missing),
                      key=lambda r: order.index(r["model"]))  # fmt: skip
    if not runs:
        raise RunsFailedError("compare: no run finished: " + "; ".join(map(str, failures)))
    report = summarize(runs, comparison.metric)
    report["seeds_planned"] = comparison.seeds
    if missing:
        report["missing"] = missing
    if comparison.launcher == "sequential" and any(r.get("peak_memory_of") == "process" for r in runs):
        report["peak_memory_shared"] = True  # one process for every row: said under the table
    if tuned is not None:
        report["tuning"] = tuned
    spec = {k: v for k, v in comparison.__dict__.items() if k not in ("path", "bases")}
    spec["bases"] = [str(b) for b in comparison.bases]
    if (
        args.models
    ):  # the file's rows, as the table keeps its other finished rows; and the ones this command ran
        spec["models"] = {m: others.get(m) or comparison.models[m] for m in order}
        spec["models_run"] = list(comparison.models)
    report["provenance"] = provenance(
        ["archbench", "compare", *argv], started, {"file": str(comparison.path), **spec}
    )
    table = write_outputs(report, out, comparison.metric)
    _log_table(comparison, out, report)
    print("\n" + table)
    print(f"\nresults: {out / 'results.json'}, {out / 'results.md'}, {out / 'comparison.png'}")
    if failures:
        raise RunsFailedError(
            f"compare: {len(failures)} of {len(jobs)} runs failed, the table holds the others; run the same "
            "command again to resume them: " + "; ".join(map(str, failures))
        )


def _remove_empty(out: Path, made: Path | None) -> None:
    """``out`` and its parents up to ``made`` (the outermost one this command made), while they are empty."""
    if made is None:
        return
    for folder in [out, *out.parents]:
        with contextlib.suppress(OSError):  # not empty: the rest stays
            folder.rmdir()
        if folder == made:
            return


def _child_argv(argv: list[str], comparison: Comparison, out: Path) -> list[str]:
    """The compare command as each run gets it: the launcher options dropped, the output folder fixed."""
    child, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--launcher", "--devices", "--out"):
            skip = "=" not in arg
            continue
        child.append(arg)
    return [*child, "--out", str(out.resolve())]


def _failed_here(comparison: Comparison, model: str, seed: int, err: Exception) -> Failure:
    """A run of the sequential launcher that failed while training, as a worker reports one (trial 27: the whole
    comparison stopped there, without a table of the rows that finished): its traceback in ``error.log`` in its
    folder, one line on the console."""
    log = comparison.run_dir(model, seed) / "error.log"
    origin = getattr(err, "origin", None) or err  # as raised where the run failed, before the row was named
    if rank_zero_only.rank == 0:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(origin)))
        print(f"{model}, seed {seed}: failed: {failure_reason(origin)} (log: {log}); the other runs go on",
              flush=True)  # fmt: skip
    return Failure(model, seed, failure_reason(origin), log)


def _dispatch(comparison: Comparison, jobs: list[tuple[str, int]], argv: list[str]) -> list[Failure]:
    """The jobs through the comparison's launcher (local workers or SLURM); the ones that failed."""
    if not jobs:
        return []
    if comparison.launcher == "local":
        return launch_local(argv, jobs, comparison.run_dir, parse_devices(comparison.devices))
    options, cluster = comparison.slurm_options()
    folder = Path(comparison.out).resolve() / "slurm"
    return launch_slurm(argv, jobs, comparison.run_dir, options, folder, cluster)


def _launch(
    comparison: Comparison, jobs: list[tuple[str, int]], argv: list[str], out: Path, overrides: list[str]
) -> tuple[list[dict], list]:
    """The unfinished runs through the comparison's launcher, then every run's result (finished earlier or
    now) and the failures."""
    # A finished run is kept here, as the sequential launcher keeps it: run_one checks that its settings are this
    # command's (parsed, nothing built) and says "finished earlier, kept"; no worker or job starts for it.
    kept = {job: run_one(comparison, *job, out, overrides) for job in jobs
            if (comparison.run_dir(*job) / "result.json").is_file()}  # fmt: skip
    failures = _dispatch(comparison, [job for job in jobs if job not in kept], argv)
    failed = {(f.model, f.seed) for f in failures}
    runs = []
    for job in jobs:
        done = comparison.run_dir(*job) / "result.json"
        if job in kept:
            runs.append(kept[job])
        elif job not in failed and done.is_file():
            runs.append(_read_result(done))
        elif job not in failed:  # the process ended well but left no result: say so, never skip silently
            failures.append(
                Failure(*job, "no result.json written", comparison.run_dir(*job) / "launcher.log")
            )
    return runs, failures


def _log_table(comparison: Comparison, out: Path, report: dict) -> None:
    import wandb

    # One summary run per comparison folder: a re-run (a resumed or extended table) logs its table again in the
    # same W&B run, rather than adding a second summary run to the group beside the stale one.
    kept = out / "wandb_summary_id"
    run_id = kept.read_text().strip() if kept.is_file() else secrets.token_hex(4)  # a W&B id: [a-z0-9]
    write_atomic(kept, run_id + "\n")
    run = wandb.init(
        project=comparison.project,
        group=comparison.name,
        name=f"{comparison.name}-summary",
        job_type="summary",
        dir=str(out.resolve()),  # absolute, as in AutoWandbLogger
        mode=wandb_mode(),
        id=run_id,
        resume="allow",
    )
    settings = {"comparison": comparison.name, "seeds": comparison.seeds, "models": list(comparison.models),
                "provenance": report["provenance"]}  # fmt: skip
    # each row's best trial (value and settings) where the rows were tuned, and the runs the table lacks, as
    # results.json has them (trial 20: the summary run held neither)
    settings.update({k: report[k] for k in ("tuning", "missing") if k in report})
    run.config.update(settings, allow_val_change=True)  # this command's, over an earlier one's
    columns = list(dict.fromkeys(c for row in report["summary"] for c in row))  # rows differ (ACT, MoE)
    run.log(
        {
            "comparison": wandb.Table(
                columns=columns, data=[[row.get(c) for c in columns] for row in report["summary"]]
            ),
            "comparison_plot": wandb.Image(str(out / "comparison.png")),
        }
    )
    run.finish()
