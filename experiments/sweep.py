"""``python -m experiments sweep --config sweep.yaml``: hyper-parameter search over any command-line key, with
Optuna as the engine (TPE sampling, pruning of poor trials at validations through optuna-integration's
Lightning callback), its study in a file or a database that several workers share.

A sweep file::

    name: dna-lstm                       # the study's name and the W&B group of its trials
    configs: [../dna/lstm.yaml]          # what every trial runs (relative to this file)
    metric: val/pearson                  # logged at each validation; a trial's value is its best
    direction: maximize
    trials: 20                           # in all, over the workers
    space:                               # any key fit takes
      model.optimizer.init_args.lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-2}
      model.net.init_args.hidden_size: {type: int, low: 32, high: 256, log: true}
      model.net.init_args.dropout: {type: uniform, low: 0.0, high: 0.5}
      model.net.init_args.cell: {type: choice, values: [lstm, gru]}
    pruner: median                       # median | none | threshold (with threshold: {lower: .., upper: ..})
    storage: runs/sweeps/dna-lstm/study.journal   # a journal file, or a database URL (sqlite:///..., postgresql://...)
    out: runs/sweeps/dna-lstm

``--workers N`` starts N worker processes on this machine sharing the storage; on a cluster, start ``sweep
--config F --worker`` in every task of a SLURM array (``--trials`` each) against one storage (a database URL, or
a journal file on a shared disk). When the trials are done, ``best.yaml`` holds the best trial's settings as a
config that ``fit`` and ``compare`` take after the sweep's own files (``fit --config ../dna/lstm.yaml --config
runs/sweeps/dna-lstm/best.yaml``), and ``trials.json`` every trial.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback

from archbench.errors import ConfigError, DataError, PretrainedError, RunsFailedError, UserError, first_line
from datamodules.files import check_folder, check_writable, fingerprint, write_atomic
from experiments.configs import (
    CommandParser,
    check_yaml,
    key_line,
    lightning_quiet,
    parse_file,
    split_options,
)
from experiments.launchers import worker_env

# Each kind of range and the keys it takes besides ``type``.
KINDS = {"log_uniform": ("low", "high"), "uniform": ("low", "high"), "int": ("low", "high", "log"),
         "choice": ("values",)}  # fmt: skip


@dataclass
class Sweep:
    """A sweep file.

    Args:
        configs: Config files every trial runs, in order (relative to the sweep file).
        space: Key -> its range: ``{type: log_uniform | uniform, low, high}``, ``{type: int, low, high, log}``
            or ``{type: choice, values: [...]}``; a key is any option ``fit`` takes, without the dashes.
        metric: What a trial is scored by: a metric logged at each validation (its best value counts).
        name: The study's name (in the storage) and the W&B group of the trials.
        direction: ``maximize`` or ``minimize``.
        trials: Trials in all (earlier ones of the same study included: re-running adds only the missing),
            shared out over the workers.
        pruner: ``median`` (stop a trial whose intermediate value is worse than the median of earlier trials
            at the same step, after 2 trials and 1 validation), ``threshold`` (outside ``threshold``'s
            ``lower``/``upper``) or ``none``.
        threshold: ``{lower: .., upper: ..}`` for the threshold pruner.
        seed: The sampler's seed (each worker's is drawn from it, its number and the trials the study holds).
        storage: A journal file (shared by processes on one machine or a shared disk) or a database URL.
            Empty: ``OUT/study.journal``.
        out: Folder of the trials' runs, trials.json and best.yaml.
        project: W&B project.
        path: Set when loaded: the sweep file.
        base_args: Set by ``compare``'s tuning: what every trial starts with instead of ``configs`` (a row's
            own config options).
        section: Set by ``compare``'s tuning: the key the sweep's settings sit under in ``path`` (``tune``).
    """

    configs: list[str]
    space: dict[str, dict]
    metric: str
    name: str = "sweep"
    direction: str = "maximize"
    trials: int = 20
    pruner: str = "median"
    threshold: dict = field(default_factory=dict)
    seed: int = 0
    storage: str | None = None
    out: str = "runs/sweep"
    project: str = "archbench"
    path: Path | None = None
    base_args: list[str] | None = None
    section: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        path = Path(path)
        parser = ArgumentParser(prog="archbench sweep", exit_on_error=False, default_env=False)
        parser.add_class_arguments(cls, skip={"path", "base_args", "section"})
        sweep = cls(**parse_file(parser, path, cls), path=path)
        sweep._check()
        return sweep

    def where(self, *keys: str) -> str:
        """``FILE:LINE: KEY`` of a key of this sweep's settings, for messages."""
        keys = (self.section, *keys) if self.section else keys
        return f"{key_line(self.path, *keys)}: {'.'.join(keys)}"

    def _check(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"{self.where('direction')}: {self.direction!r} is not maximize or minimize")
        if self.pruner not in ("median", "threshold", "none"):
            raise ConfigError(f"{self.where('pruner')}: {self.pruner!r} is not median, threshold or none")
        if self.trials < 1:
            raise ConfigError(f"{self.where('trials')}: {self.trials} is not a positive integer")
        if not self.space:
            raise ConfigError(f"{self.where('space')}: no keys to search")
        for key, spec in self.space.items():
            self._check_range(key, spec)
        if self.pruner == "threshold" and (not self.threshold or set(self.threshold) - {"lower", "upper"}):
            raise ConfigError(
                f"{self.where('threshold')}: {self.threshold!r} needs lower and/or upper, nothing else"
            )
        for k, file in enumerate(self.config_files()):  # named in the sweep file, where a user looks
            check_yaml(file, option=f"{self.where('configs')}[{k}]")
        # an out that is a file: said before a trial writes there
        if self.out and Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(
                f"{self.where('out')}: {self.out} is a file, not a folder for the sweep's files"
            )

    def _check_range(self, key: str, spec) -> None:
        """One key of the space, as Optuna will take it: every mistake named now, not once per trial."""
        where = self.where("space", key)
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{where}: {spec!r} is not a mapping such as {{type: uniform, low: 0, high: 1}}"
            )
        kind = spec.get("type")
        if kind not in KINDS:
            raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(KINDS)}")
        unknown = sorted(set(spec) - {"type", *KINDS[kind]})
        if unknown:
            raise ConfigError(f"{where}: {kind} takes {', '.join(KINDS[kind])}, not {', '.join(unknown)}")
        needed = [n for n in KINDS[kind] if n != "log"]
        if any(n not in spec for n in needed):
            raise ConfigError(f"{where}: {kind} needs {' and '.join(needed)}")
        if kind == "choice":
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.values: {values!r} is not a non-empty list")
            odd = [v for v in values if v is not None and not isinstance(v, bool | int | float | str)]
            if odd:  # what Optuna's storages hold
                raise ConfigError(f"{where}.values: {odd[0]!r} is not a number, string, boolean or null")
            return
        for name in ("low", "high"):
            value = spec[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{where}.{name}: {value!r} is not a finite number")
            if kind == "int" and value != int(value):
                raise ConfigError(f"{where}.{name}: {value!r} is not a whole number")
            if kind == "int":  # 16.0 is the whole number 16 (Optuna's int range takes ints)
                spec[name] = int(value)
        low, high, log = spec["low"], spec["high"], spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log: {log!r} is not true or false")
        if not low < high:
            raise ConfigError(f"{where}: low {low} is not below high {high}")
        if kind == "log_uniform" and low <= 0:
            raise ConfigError(f"{where}: log_uniform needs low > 0, got {low}")
        if log and low < 1:
            raise ConfigError(f"{where}: int with log: true needs low >= 1, got {low}")

    def config_files(self) -> list[Path]:
        return [(self.path.parent / c).resolve() for c in self.configs]

    def trial_args(self) -> list[str]:
        """What every trial starts with, before its own values and the command line's options."""
        if self.base_args is not None:
            return list(self.base_args)
        return [a for f in self.config_files() for a in ("--config", str(f))]

    def storage_url(self):
        """Optuna's storage: a database URL as it is, else a journal file (created with its folder)."""
        import optuna

        target = self.storage or str(Path(self.out) / "study.journal")
        if "://" in target:
            sqlite = _sqlite_file(target)
            if sqlite is not None:  # its folder made, as a journal file's is
                sqlite.parent.mkdir(parents=True, exist_ok=True)
            return target
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(target))

    def check_storage(self) -> None:
        """The storage, before anything is written: a database that opens (its driver installed), or a journal
        file that can be written and is not a mistyped database URL (trial 27: 'sqlite//x.db' ran the sweep into a
        journal file ./sqlite/x.db; a database that could not open was a traceback after settings.json)."""
        storage = self.storage
        if not storage:
            return
        if "://" not in storage:
            looks = re.match(r"(sqlite|postgres(?:ql)?|mysql|mariadb|oracle|mssql)(\+\w+)?(:|//)", storage)
            if looks or storage.endswith((".db", ".sqlite", ".sqlite3")):
                raise ConfigError(
                    f"{self.where('storage')}: {storage!r} reads as a journal file's path, not a database URL: a "
                    "database is a URL with '://' (sqlite:///runs/study.db, postgresql://user@host/db); a journal "
                    "file, a plain path (runs/study.journal)"
                )
            check_writable(storage, f"{self.where('storage')}:")
            return
        sqlite = _sqlite_file(storage)
        if sqlite is not None:  # nothing opened, nothing made: SQLite would create the file on connecting
            check_writable(sqlite, f"{self.where('storage')}: {storage!r}:")
            if (
                sqlite.is_file()
                and sqlite.stat().st_size
                and not sqlite.read_bytes()[:16] == b"SQLite format 3\0"
            ):
                raise ConfigError(f"{self.where('storage')}: {storage!r}: {sqlite} is not a SQLite database")
            return
        try:  # a database server: connected to, nothing created there
            import sqlalchemy

            sqlalchemy.create_engine(storage).connect().close()
        except ImportError as err:
            scheme = storage.split("://", 1)[0]
            raise ConfigError(
                f"{self.where('storage')}: {storage!r}: the driver for {scheme} is not installed ({first_line(err)}); "
                "install it in this environment (postgresql: psycopg2-binary; mysql+pymysql: PyMySQL)"
            ) from None
        except Exception as err:  # noqa: BLE001 - SQLAlchemy's and the drivers' own errors: said in one line
            raise ConfigError(
                f"{self.where('storage')}: {storage!r} cannot be opened: {first_line(err)}"
            ) from None

    def make_pruner(self):
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if self.pruner == "threshold":
            return optuna.pruners.ThresholdPruner(**self.threshold)
        return optuna.pruners.NopPruner()


def suggest(trial, space: dict[str, dict]) -> dict:
    """One value per key of the space, as Optuna's sampler proposes it."""
    values = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "choice":
            values[key] = trial.suggest_categorical(key, spec["values"])
        elif kind == "int":
            values[key] = trial.suggest_int(
                key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log"))
            )
        else:
            values[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=kind == "log_uniform"
            )
    return values


def nested(values: dict) -> dict:
    """``{"model.optimizer.init_args.lr": 0.01}`` -> ``{"model": {"optimizer": {"init_args": {"lr": 0.01}}}}``."""
    out: dict = {}
    for key, value in values.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


class LoggedMetric(Callback):
    """Stops a run at its first validation (the sanity check's, before a step trains) when ``metric`` is not
    among what it logged there: a misspelt name is refused before a whole run trains for nothing."""

    def __init__(self, metric: str, where: str):
        self.metric, self.where, self.checked = metric, where, False

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.checked:
            return
        self.checked = True
        if self.metric not in trainer.callback_metrics:
            logged = (
                ", ".join(sorted(k for k in trainer.callback_metrics if not k.startswith("train/")))
                or "nothing"
            )
            raise ConfigError(
                f"{self.where}{self.metric!r} is not logged at validation (the runs log {logged})"
            )


class BestValue(Callback):
    """The best value of the sweep's metric over a trial's validations."""

    def __init__(self, metric: str, maximize: bool):
        self.metric, self.maximize, self.value = metric, maximize, None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        if self.value is None or (value > self.value if self.maximize else value < self.value):
            self.value = value


def objective(sweep: Sweep, overrides: list[str]):
    """The trial function: a fit with the trial's settings, pruned at a validation where Optuna says so."""
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from experiments.cli import ExperimentCLI
    from experiments.loggers import AutoWandbLogger, discard_run

    def run(trial: optuna.Trial) -> float:
        run.started.append(trial.number)
        try:
            return fit_trial(trial)
        except (ConfigError, DataError, PretrainedError):
            # the same for every trial: the sweep stops with the message, and this trial's folder goes (a re-run
            # after the mend starts that trial number afresh, not over its files)
            shutil.rmtree(Path(sweep.out) / f"trial-{trial.number}", ignore_errors=True)
            raise
        except (RuntimeError, ValueError, FloatingPointError) as err:  # this trial's own (a non-finite loss)
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            print(f"sweep {sweep.name!r}: trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
            raise TrialFailed(str(err)) from err

    def fit_trial(trial: optuna.Trial) -> float:
        values = suggest(trial, sweep.space)
        folder = Path(sweep.out) / f"trial-{trial.number}"
        args = [*sweep.trial_args(), "--config", yaml.safe_dump(nested(values)), *overrides,
                 f"--trainer.default_root_dir={folder}", "--trainer.logger=false"]  # fmt: skip
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*args parameter is intended to run from within Python.*"
            )
            cli = ExperimentCLI(args=args, run=False)
        from lightning.pytorch.loggers import CSVLogger

        wandb = AutoWandbLogger(project=sweep.project, save_dir=sweep.out, group=sweep.name,
                                name=f"trial-{trial.number}", job_type="sweep", tags=["sweep"])  # fmt: skip
        cli.trainer.loggers = [CSVLogger(str(folder), name="", version=""), wandb]
        best = BestValue(sweep.metric, sweep.direction == "maximize")
        pruning = PyTorchLightningPruningCallback(trial, monitor=sweep.metric)
        cli.trainer.callbacks += [LoggedMetric(sweep.metric, f"{sweep.where('metric')}: "), best, pruning]
        wandb.log_hyperparams({"trial": trial.number, **values})
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            if best.value is None:  # no validation ran: a setting, the same for every trial
                raise ConfigError(
                    f"sweep: the runs never log {sweep.metric!r} at validation (metric:); see {folder}/metrics.csv"
                )
            pruning.check_pruned()  # under DDP the pruner stops the fit and says so here (in one process: in fit)
        except (ConfigError, DataError, PretrainedError):  # a mistake that stops the sweep: no run to keep
            discard_run(wandb)
            raise
        except optuna.TrialPruned:  # stopped by the pruner: a run that ended as asked
            wandb.experiment.summary.update({"best": best.value, "pruned": True})
            wandb.experiment.finish(exit_code=0)
            raise
        except BaseException:
            wandb.experiment.summary.update({"best": best.value})
            wandb.experiment.finish(exit_code=1)
            raise
        wandb.experiment.summary.update({"best": best.value})
        wandb.experiment.finish(exit_code=0)
        return best.value

    run.started = []  # the trials this worker began, for an interruption to close
    return run


class StudyBudget:
    """An Optuna callback that stops this worker once the study holds ``total`` trials that count: completed or
    pruned, or running since ``since`` (another command's on the same storage, started meanwhile). Two sweep
    commands started at once on one storage then share the budget instead of each running all of it (trial 20:
    6 trials of a budget of 3); a trial left running by a kill before ``since`` is not counted (it runs again)."""

    def __init__(self, total: int, since):
        self.total, self.since = total, since

    def __call__(self, study, trial) -> None:
        import optuna

        state = optuna.trial.TrialState
        counted = sum(
            t.state.name in COUNTED
            or (t.state == state.RUNNING and t.datetime_start is not None and t.datetime_start >= self.since)
            for t in study.get_trials(deepcopy=False)
        )
        if counted >= self.total:
            study.stop()


def run_worker(
    sweep: Sweep, trials: int, worker: int, overrides: list[str], budget: StudyBudget | None = None
) -> None:
    import optuna

    # Optuna logs every failed trial with its traceback: a failed trial is said in one line above instead, and a
    # mistake that stops the sweep as the command's one error line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # The pruning callback reports once per epoch (its step): a second validation in an epoch is not reported,
    # which Optuna would warn about at every one
    warnings.filterwarnings("ignore", message="The reported value is ignored because this `step")
    # Seeded by the worker and by the trials the study holds already: a sweep run again for more trials, or a
    # worker started again, draws new settings instead of repeating its first ones.
    seed = np.random.SeedSequence([sweep.seed, worker, _trials_held(sweep)]).generate_state(1)[0]
    sampler = optuna.samplers.TPESampler(seed=int(seed))
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage_url(), sampler=sampler,
                                pruner=sweep.make_pruner(), direction=sweep.direction, load_if_exists=True)  # fmt: skip
    # A failed trial (an error, a non-finite loss) is recorded as failed; the worker goes on with the next. A
    # mistake in the config or the data stops the sweep instead.
    run = objective(sweep, overrides)
    try:
        study.optimize(run, n_trials=trials, catch=(TrialFailed,), callbacks=[budget] if budget else None)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C (Lightning's handler of it exits with status 1): Optuna
        # leaves the trial RUNNING for good; it failed, and a re-run replaces it
        running = optuna.trial.TrialState.RUNNING
        for trial in study.get_trials(deepcopy=False, states=(running,)):
            if trial.number in run.started:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                print(
                    f"sweep {sweep.name!r}: trial {trial.number} interrupted (recorded as failed)",
                    file=sys.stderr,
                )
        raise


class TrialFailed(RuntimeError):
    """One trial's own failure (a non-finite loss, say): recorded as failed, the sweep goes on."""


def summarize(sweep: Sweep, overrides: list[str] = ()) -> dict:
    """trials.json and best.yaml from the study; the best trial's value and settings."""
    import optuna

    study = optuna.load_study(study_name=sweep.name, storage=sweep.storage_url())
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "steps_reported": len(t.intermediate_values)} for t in study.trials]  # fmt: skip
    out = Path(sweep.out)
    write_atomic(out / "trials.json", json.dumps({"metric": sweep.metric, "direction": sweep.direction,
                                                  "trials": trials}, indent=1) + "\n")  # fmt: skip
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RunsFailedError(f"sweep: no trial completed ({len(trials)} in {out / 'trials.json'})")
    best = study.best_trial
    use = (
        "# compare uses it after the row's own configs"
        if sweep.base_args is not None
        else "# Use after the sweep's configs, with the options its trials ran with: "
        + shlex.join(
            [
                *(a for c in sweep.config_files() for a in ("--config", str(c))),
                "--config",
                str(out / "best.yaml"),
                *overrides,
            ]
        )  # fmt: skip
    )
    header = (f"# Best of sweep {sweep.name!r}: trial {best.number}, {sweep.metric} = {best.value:.6g} "
              f"({len(complete)} of {len(trials)} trials completed).\n{use}\n")  # fmt: skip
    write_atomic(out / "best.yaml", header + yaml.safe_dump(nested(best.params), sort_keys=False))
    # the trials that count towards the budget (trials_so_far's), and the failed ones that were run again
    return {"number": best.number, "value": best.value, "params": best.params,
            "trials": sum(t["state"] in COUNTED for t in trials),
            "trials_failed": sum(t["state"] == "FAIL" for t in trials)}  # fmt: skip


# the trial states that count towards a study's budget (a failed trial, or one an interruption left running, is
# run again)
COUNTED = ("COMPLETE", "PRUNED")


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL, with or without a driver (``sqlite+pysqlite:///``); None for another
    database, or SQLite in memory."""
    found = re.match(r"sqlite(\+\w+)?:///(.+)$", url)
    if found is None or found[2] == ":memory:":
        return None
    return Path(found[2])


def main(argv: list[str]) -> None:
    own, overrides = split_options(argv)
    parser = CommandParser(
        prog="python -m experiments sweep",
        description=__doc__.split("\n\n")[0],
        # trial 34: taken, and unsaid in the help
        epilog="Options of the runs (--data.*, --model.*, --trainer.*, --early_stopping.*) after these go to every "
        "trial; a study begun with other options is not resumed with these (the command says which differ).",
    )
    parser.add_argument("--config", required=True, help="the sweep file")
    parser.add_argument(
        "--trials", type=int, help="trials in all (with --worker: this worker's); overrides the file"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    parser.add_argument(
        "--worker", type=int, help="run as worker number N only (a SLURM task, say), no summary"
    )
    args = parser.parse_args(own)
    started = datetime.now()  # Optuna's trial times are local and naive
    sweep = Sweep.load(args.config)
    trials = args.trials if args.trials is not None else sweep.trials
    if trials < 1 or args.workers < 1:
        raise ConfigError(f"sweep: --trials {trials} and --workers {args.workers} must be positive")
    if args.worker is not None and args.worker < 0:
        raise ConfigError(f"sweep: --worker {args.worker} is not a worker number (0, 1, ...)")
    # where the trials go, before any is written: the output folder, the journal file or database
    # made by this command: a mistake found at the first trial removes it
    fresh = not Path(sweep.out).exists()
    check_folder(sweep.out, sweep.where("out"))
    sweep.check_storage()
    check_keys(sweep, overrides)
    remedy = f"give another out (or storage) in {args.config}, or delete {sweep.out} to start again"
    check_settings(sweep, overrides, f"sweep {sweep.name!r}", remedy)
    if args.worker is not None:
        run_worker(sweep, trials, args.worker, overrides)
        return
    done = trials_so_far(sweep)
    if done:  # the study goes on: `trials` counts every trial of it, earlier ones included
        print(
            f"sweep {sweep.name!r}: {done} trial{'s' if done != 1 else ''} in the study already", flush=True
        )
    trials = max(0, trials - done)
    shares = [trials // args.workers + (k < trials % args.workers) for k in range(args.workers)]
    print(f"sweep {sweep.name!r}: {trials} trials over {args.workers} workers -> {sweep.out}", flush=True)
    failed = []
    if trials == 0:
        pass
    elif args.workers == 1:
        try:  # the study's budget shared with any other command on the same storage
            run_worker(sweep, trials, 0, overrides, StudyBudget(trials + done, started))
        except (ConfigError, DataError):
            if fresh and not trials_so_far(sweep):
                # a setting or data mistake found by the first trial (a metric the runs do not log): nothing of
                # this command's is kept (trial 27: settings.json, the journal and a failed trial were left)
                shutil.rmtree(sweep.out, ignore_errors=True)
            else:
                summarize_what_finished(sweep, overrides)
            raise
        except (UserError, KeyboardInterrupt, SystemExit):  # what finished is written before the sweep stops
            summarize_what_finished(sweep, overrides)
            raise
    else:
        import torch

        Path(sweep.out).mkdir(parents=True, exist_ok=True)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        processes = []
        for k, share in enumerate(shares):
            if share:
                log = open(Path(sweep.out) / f"worker-{k}.log", "ab")  # noqa: SIM115 (closed below)
                command = [sys.executable, "-m", "experiments", "sweep", "--config", args.config, "--trials",
                           str(share), "--worker", str(k), *overrides]  # fmt: skip
                # as compare's local workers: a GPU each (in turn), or a share of the CPU cores; own W&B service
                env = worker_env(str(k % gpus) if gpus else str(k), args.workers, cuda=gpus > 0)
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                processes.append((k, process, log))
        try:
            for _, process, _ in processes:
                process.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the workers too: each closes its trial; then what finished
            for _, process, log in processes:
                process.wait()
                log.close()
            summarize_what_finished(sweep, overrides)
            raise
        for k, process, log in processes:
            log.close()
            if process.returncode != 0:  # the worker's error line says why, where it printed one
                lines = Path(log.name).read_text(errors="replace").splitlines()
                said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
                failed.append(
                    f"worker {k}: {(said or [f'exit status {process.returncode}'])[-1]} (log: {log.name})"
                )
    try:
        best = summarize(sweep, overrides)
    except RunsFailedError:
        if not failed:
            raise
        raise RunsFailedError("sweep: no trial completed: " + "; ".join(failed)) from None
    print(f"best: trial {best['number']}, {sweep.metric} = {best['value']:.6g}, {best['params']}\n"
          f"-> {Path(sweep.out) / 'best.yaml'}, {Path(sweep.out) / 'trials.json'}")  # fmt: skip
    if failed:  # the best of the others is written; the failures are said, and the command fails
        raise RunsFailedError("sweep: " + "; ".join(failed))


def summarize_what_finished(sweep: Sweep, overrides: list[str]) -> None:
    """trials.json and best.yaml of a sweep that is stopping, as far as its study allows: whatever goes wrong
    here (no trial finished, a storage locked) must not hide why the sweep stopped."""
    with contextlib.suppress(Exception):
        summarize(sweep, overrides)


def check_settings(sweep: Sweep, overrides: list[str], what: str, remedy: str) -> None:
    """A study goes on only with the settings it began with (space, metric, direction, configs and their
    contents, options): otherwise its trials would not compare, and its best would be scored on two metrics.
    Written on the first run (``OUT/settings.json``); a study none of whose trials counts (they failed, a
    misspelt metric say) starts again with the new settings."""
    import optuna

    def with_contents(arg: str) -> str:
        path = Path(arg)
        return f"{arg} {fingerprint(path)}" if len(arg) < 4096 and path.is_file() else arg

    settings = {"space": sweep.space, "metric": sweep.metric, "direction": sweep.direction,
                "pruner": sweep.pruner, "threshold": sweep.threshold, "seed": sweep.seed,
                "args": [with_contents(a) for a in [*sweep.trial_args(), *overrides]]}  # fmt: skip
    text = json.dumps(settings, indent=1, default=str) + "\n"
    path = Path(sweep.out) / "settings.json"
    if path.is_file() and _as_compared(json.loads(path.read_text())) != _as_compared(json.loads(text)):
        if trials_so_far(sweep):
            before, now = json.loads(path.read_text()), json.loads(text)
            changed = ", ".join(_change(k, before.get(k), now[k]) for k in now if before.get(k) != now[k])
            raise ConfigError(
                f"{path.parent}: {what} was run with other settings ({changed}; see {path.name} there): its "
                f"trials would not compare with new ones; {remedy}"
            )
        with contextlib.suppress(KeyError):  # a study of failed trials only starts again (KeyError: none yet)
            optuna.delete_study(study_name=sweep.name, storage=sweep.storage_url())
            print(f"{what}: none of its trials counted; starting again with the new settings")
    write_atomic(path, text)


def _as_compared(settings: dict) -> dict:
    """A study's settings as two runs of it are compared: values (key order aside), and the options as the
    parser reads them: ``--x 8`` as ``--x=8``, and the options other than ``--config`` in any order (the configs
    keep theirs, which decides what wins). Trial 20: the same options reordered, or written with ``=``, were
    refused as "added --trainer.max_steps 8; left out --trainer.max_steps 8"."""
    args = settings.get("args")
    if not isinstance(args, list):
        return settings
    joined, k = [], 0
    while k < len(args):
        arg = str(args[k])
        takes_value = arg.startswith("--") and "=" not in arg and k + 1 < len(args)
        if takes_value and not str(args[k + 1]).startswith("--"):
            joined.append(f"{arg}={args[k + 1]}")
            k += 2
        else:
            joined.append(arg)
            k += 1
    configs = [a for a in joined if a.startswith("--config=")]
    last: dict = {}  # an option given twice: the last wins, as in the parser (an append, ``+=``, keeps each)
    for a in joined:
        if not a.startswith("--config="):
            key = a.split("=", 1)[0]
            last[(key, len(last)) if key.endswith("+") else key] = a
    return {**settings, "args": configs + sorted(last.values())}


def _change(key: str, before, now) -> str:
    """What changed in one of a study's settings, for the refusal: the options that differ (``args:
    --data.batch_size 8 -> 16``; a config file whose contents changed, by name), or the key alone."""
    if key != "args" or not isinstance(before, list):
        return key
    import difflib

    said = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=now, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        was, is_ = before[i1:i2], now[j1:j2]
        if len(was) == len(is_) == 1 and was[0].split(" ")[0] == is_[0].split(" ")[0] != was[0]:
            said.append(f"{was[0].split(' ')[0]} (its contents changed)")  # a file, fingerprinted
            continue
        flag = before[i1 - 1] if i1 else ""  # a value changed after its option: said with the option
        value = tag == "replace" and flag.startswith("-") and "=" not in flag and not was[0].startswith("-")
        lead = f"{flag} " if value else ""
        if tag == "insert":
            said.append(f"added {' '.join(is_)}")
        elif tag == "delete":
            said.append(f"left out {' '.join(was)}")
        else:
            said.append(f"{lead}{' '.join(was)} -> {' '.join(is_)}")
    return f"args: {'; '.join(said)}"


def check_keys(sweep: Sweep, overrides: list[str]) -> None:
    """The space's keys built as a trial's options are (model and data, no logger), at every choice value and at
    each range's low and high: a misspelt key, or a value its option or only a constructor refuses (a choice
    ``lstmm``, a dropout up to 1.5), is named now with its line in the sweep file, not when a trial draws it
    (which would stop the sweep midway). A few builds in all: the trials' options alone (a mistake there is not
    the space's), the n-th value of every key at once, then each key alone only to name the one that failed."""
    from jsonargparse import ArgumentError

    from experiments.cli import ExperimentCLI
    from experiments.configs import from_command_line, one_line, where_set

    def build(values: dict) -> None:
        args = [*sweep.trial_args(), "--config", yaml.safe_dump(nested(values)), *overrides]
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*args parameter is intended to run from within Python.*"
            )
            ExperimentCLI(args=[*args, "--trainer.logger=false"], run=False)

    given = {k: spec["values"] if spec["type"] == "choice" else [spec["low"], spec["high"]]
             for k, spec in sweep.space.items()}  # fmt: skip
    with lightning_quiet():  # the seed's note is said again when each trial starts
        try:  # the trials' options without the space: a mistake there is not the space's
            build({})
        except (ArgumentError, UserError) as err:
            said = one_line(str(err))
            args = [*sweep.trial_args(), *overrides]
            raise ConfigError(
                f"sweep: {where_set(said, args)}{said}{from_command_line(str(err), overrides, 'every trial')}"
            ) from None
        for n in range(max(len(v) for v in given.values())):
            values = {k: v[min(n, len(v) - 1)] for k, v in given.items()}
            try:
                build(values)
            except (ArgumentError, UserError):
                for key, value in values.items():  # which key: each alone
                    try:
                        build({key: value})
                    except (ArgumentError, UserError) as err:
                        raise ConfigError(f"{sweep.where('space', key)}: {one_line(str(err))}") from None
                raise


def _trials_held(sweep: Sweep) -> int:
    """Trials of the study in any state; 0 when it does not exist yet."""
    import optuna

    try:
        return len(optuna.load_study(study_name=sweep.name, storage=sweep.storage_url()).trials)
    except KeyError:
        return 0


def trials_so_far(sweep: Sweep) -> int:
    """Trials of the study that count towards its budget: completed or pruned (a failed trial, or one left
    running by an interruption, is run again); 0 when the study does not exist yet."""
    import optuna

    try:
        trials = optuna.load_study(study_name=sweep.name, storage=sweep.storage_url()).trials
    except KeyError:  # no such study yet
        return 0
    return sum(t.state.name in COUNTED for t in trials)
