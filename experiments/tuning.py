"""Fair tuning for ``compare``: every row searched with the same trial budget by the sweep engine (Optuna's TPE,
pruning at validations) before its seeds run; each row's best settings then apply to all of its seeds.

A comparison file's ``tune`` section::

    tune:
      trials: 8                    # per row
      space:                       # as a sweep file's: any key fit takes
        model.optimizer.init_args.lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-2}
      metric: val/acc              # default: the comparison's metric at validation (test/acc -> val/acc)
      direction: maximize          # default: minimize for losses, error rates and perplexity, else maximize
      pruner: median               # median | threshold | none
      seed: 0                      # the trials' seed_everything (and the sampler's seed)

Each row's study, its trials and ``best.yaml`` are in ``OUT/tune/ROW/``; a re-run adds only missing trials
(failed or interrupted ones run again) and refuses a study begun with other settings. The trials score on the
validation split, never on the test split the table reports; each runs on one device, by epochs (a
``budget_flops`` comparison is refused: its rows would be tuned at another budget). With the sequential launcher
the rows are tuned one after another in the compare process; with ``local`` or ``slurm`` each row's tuning is one
job of the launcher (a worker per device, a SLURM job), all rows at once, before the seeds' runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from archbench.errors import ConfigError, UserError
from experiments.configs import key_hint, key_line
from experiments.sweep import (
    Sweep,
    check_keys,
    check_settings,
    run_worker,
    summarize,
    summarize_what_finished,
    trials_so_far,
)

# The functions take compare's ``Comparison`` (its models, out, name, metric, tune section and run_args), which
# imports this module: duck-typed here, so the imports run one way.

MINIMIZED = {"loss", "error", "per", "wer", "cer", "ece", "perplexity", "mse", "mae", "rmse"}


@dataclass
class Tuning:
    space: dict[str, dict]
    trials: int = 8
    metric: str | None = None
    direction: str | None = None
    pruner: str = "median"
    threshold: dict = field(default_factory=dict)
    seed: int = 0


def default_direction(metric: str) -> str:
    words = re.split(r"[/_.]", metric.lower())
    return "minimize" if MINIMIZED & set(words) else "maximize"


def tuning_of(comparison) -> Tuning | None:
    """The comparison's ``tune`` section, checked (unknown keys and bad ranges named), or None."""
    if comparison.tune is None:
        return None
    keys = [f.name for f in fields(Tuning)]
    if not isinstance(comparison.tune, dict):
        raise ConfigError(f"{key_line(comparison.path, 'tune')}: tune: expected a mapping of {', '.join(keys)}, "
                          f"found {comparison.tune!r:.60}")  # fmt: skip
    for name in comparison.tune:  # named with its line and the close key, as the file's other keys are
        if name not in keys:
            raise ConfigError(
                f"{key_line(comparison.path, 'tune', name)}: tune.{name}: not an option ({key_hint(name, keys)})"
            )
    if "space" not in comparison.tune:
        raise ConfigError(f"{key_line(comparison.path, 'tune')}: tune: needs space (the options to tune)")
    tuning = Tuning(**comparison.tune)
    if comparison.budget_flops is not None:
        raise ConfigError(
            f"{comparison.path}: tune: trials train by epochs, not to budget_flops ({comparison.budget_flops:g}); "
            "a row tuned at another budget than its seeds run would not be fair: drop one of the two"
        )
    tuning.metric = tuning.metric or re.sub(r"^test/", "val/", comparison.metric)
    tuning.direction = tuning.direction or default_direction(tuning.metric)
    if not tuning.metric.startswith("val/"):
        raise ConfigError(
            f"{key_line(comparison.path, 'tune', 'metric')}: tune.metric: {tuning.metric!r} is not a validation "
            "metric (val/...): "
            "tuning on the test split would make the table's test figures optimistic"
        )
    return tuning


def row_sweep(comparison, model: str, tuning: Tuning) -> Sweep:
    """The sweep that tunes one row: the row's own configs, the tuning's space and budget."""
    sweep = Sweep(configs=[], space=tuning.space, metric=tuning.metric, name=f"{comparison.name}-{model}",
                  direction=tuning.direction, trials=tuning.trials, pruner=tuning.pruner,
                  threshold=tuning.threshold, seed=tuning.seed, out=str(tune_dir(comparison, model)),
                  project=comparison.project, path=comparison.path, section="tune",
                  base_args=comparison.run_args(model, tuned=False))  # fmt: skip
    sweep._check()
    return sweep


TUNE_JOB = -1  # the seed of a launcher's job that tunes the row instead of training one of its seeds


def tune_dir(comparison, model: str) -> Path:
    return Path(comparison.out) / "tune" / model


def _trial_overrides(tuning: Tuning, overrides: list[str]) -> list[str]:
    return [*overrides, f"--seed_everything={tuning.seed}", "--trainer.devices=1"]


def check_tuning(comparison, overrides: list[str]) -> None:
    """Every row's trials checked (``check_keys``: the space built with each row's options) before
    any row tunes: a key one row does not take stops the comparison now, naming the row, not after the rows
    before it have tuned."""
    tuning = tuning_of(comparison)
    for model in comparison.models:
        try:
            check_keys(row_sweep(comparison, model, tuning), _trial_overrides(tuning, overrides))
        except ConfigError as err:
            raise ConfigError(f"{err} (row {model!r}, {comparison.models[model]})") from None


def tune_rows(comparison, overrides: list[str]) -> dict[str, dict]:
    """Tune every row in turn, in this process; each row's best trial: value and settings."""
    return {model: tune_row(comparison, model, overrides) for model in comparison.models}


def trials_left(comparison, model: str, tuning: Tuning | None = None, sweep: Sweep | None = None) -> int:
    """The row's trials still to run (a launcher starts no tuning job for a row that has them all); ``tuning``
    and ``sweep`` where the caller built them."""
    tuning = tuning or tuning_of(comparison)
    return max(0, tuning.trials - trials_so_far(sweep or row_sweep(comparison, model, tuning)))


def tune_row(comparison, model: str, overrides: list[str]) -> dict:
    """Run the row's missing trials (none when a launcher's worker ran them already) and write its best.yaml;
    its best trial's value and settings."""
    tuning = tuning_of(comparison)
    sweep = row_sweep(comparison, model, tuning)
    trial_overrides = _trial_overrides(tuning, overrides)  # its space checked by check_tuning, before any row
    check_settings(sweep, trial_overrides, f"row {model!r}", "give another --out, or delete the folder")
    missing = trials_left(comparison, model, tuning, sweep)
    if missing:
        print(f"\n=== tuning {model}: {missing} of {tuning.trials} trials to run, {tuning.metric} "
              f"({tuning.direction}) -> {sweep.out} ===", flush=True)  # fmt: skip
        try:
            run_worker(sweep, missing, 0, trial_overrides)
        except (UserError, KeyboardInterrupt, SystemExit):  # what finished is written before the row stops
            summarize_what_finished(sweep, trial_overrides)
            raise
    best = summarize(sweep)
    tuned = {"metric": tuning.metric, "trials": best["trials"], "best_trial": best["number"],
             "value": best["value"], "params": best["params"]}  # fmt: skip
    if best["trials_failed"]:  # failed trials (an interrupted one) are run again: not in the budget
        tuned["trials_failed"] = best["trials_failed"]
    return tuned
