"""``python -m experiments lr_find --config ...``: Lightning's learning-rate range test (``Tuner.lr_find``) on
the run a config describes; prints the suggested ``--model.optimizer.lr`` and saves the loss-vs-lr plot.
"""

from __future__ import annotations

import logging
import tempfile
import warnings

from archbench.errors import ConfigError
from datamodules.files import check_writable, write_atomic
from experiments.configs import CommandParser, finite_float


def main(argv: list[str]) -> None:
    parser = CommandParser(prog="python -m experiments lr_find", description=__doc__)
    parser.add_argument("--config", action="append", required=True, help="config file(s), in order")
    parser.add_argument("--min_lr", type=finite_float, default=1e-6)
    parser.add_argument("--max_lr", type=finite_float, default=1.0)
    parser.add_argument("--num_training", type=int, default=100, help="steps of the range test")
    parser.add_argument("--out", default="lr_find.png", help="plot to write, its format by its name (default: lr_find.png)")  # fmt: skip
    args, overrides = parser.parse_known_args(argv)
    from experiments.from_checkpoint import image_format

    check_writable(args.out, "--out")  # before the range test
    fmt = image_format(args.out)
    if args.num_training < 2:  # Lightning divides by it, and a curve needs two points
        raise ConfigError(f"lr_find --num_training: {args.num_training} is below 2")
    if not 0 < args.min_lr < args.max_lr:
        raise ConfigError(
            f"lr_find: --min_lr {args.min_lr:g} and --max_lr {args.max_lr:g} are not a range above 0"
        )

    from lightning.pytorch.tuner import Tuner

    from experiments.cli import ExperimentCLI

    cli_args = [a for c in args.config for a in ("--config", c)] + overrides + ["--trainer.logger=false"]
    cli_args += ["--trainer.callbacks=null", "--trainer.enable_checkpointing=false"]  # a probe: no files
    # the test's steps, not the config's epoch budget: a small dataset's few epochs would cut it short
    cli_args += [
        "--trainer.max_epochs=-1",
        f"--trainer.max_steps={args.num_training}",
        "--trainer.max_time=null",
    ]
    _say_finetuning_left_out([a for c in args.config for a in ("--config", c)] + overrides)
    # Tuner.lr_find saves the model's state before the test and restores it after, as a checkpoint file in
    # the trainer's root folder: a temporary folder here, so that a killed test leaves nothing in the cwd
    with tempfile.TemporaryDirectory(prefix="lr_find_") as scratch:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*args parameter is intended to run from within Python.*"
            )
            cli = ExperimentCLI(args=[*cli_args, f"--trainer.default_root_dir={scratch}"], run=False)
        finder = Tuner(
            cli.trainer
        ).lr_find(
            cli.model,
            datamodule=cli.datamodule,
            min_lr=args.min_lr,
            max_lr=args.max_lr,
            num_training=args.num_training,
            update_attr=False,  # the rate lives in the optimizer's config (model.optimizer.lr): printed, not set
        )
    from experiments.attention import figure_bytes

    # Lightning logs its own "Failed to compute suggestion" at each call (the plot makes one): said once below
    finder_log = logging.getLogger("lightning.pytorch.tuner.lr_finder")
    level = finder_log.level
    finder_log.setLevel(logging.CRITICAL)
    try:
        suggestion = finder.suggestion()
    finally:
        finder_log.setLevel(level)
    write_atomic(args.out, figure_bytes(finder.plot(suggest=suggestion is not None), fmt))
    ran = len(finder.results.get("lr", []))
    said = f"lr_find: {ran} of {args.num_training} steps ran"
    if 0 < ran < args.num_training:  # Lightning stops when the loss diverges: the rates past it are untried
        said += f"; the loss diverged at lr {finder.results['lr'][-1]:.3g}, so higher rates were not tried"
    print(said)
    if suggestion is None:  # Lightning needs enough finite losses to pick the steepest descent
        print(f"lr_find: no suggestion (too few usable steps; raise --num_training) (plot: {args.out})")
    else:
        print(f"lr_find: suggested --model.optimizer.lr {suggestion:.3g} (plot: {args.out})")


def _say_finetuning_left_out(cli_args: list[str]) -> None:
    """The config's callbacks are left out of the range test (it writes no files); one that decides what
    trains (BackboneFinetuning's frozen first epochs) is said, as the test then tries every layer at once
    (trial 29: unsaid)."""
    from lightning.pytorch.callbacks import BaseFinetuning

    from experiments.cli import ExperimentCLI
    from experiments.configs import import_class

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        parsed = ExperimentCLI(args=[*cli_args, "--trainer.logger=false"], run=False, parse_only=True).config
    for callback in parsed.get("trainer", {}).get("callbacks") or []:
        cls = import_class(str(callback.get("class_path"))) if hasattr(callback, "get") else None
        if isinstance(cls, type) and issubclass(cls, BaseFinetuning):
            print(f"lr_find: {cls.__name__} is left out of the range test, as the config's other callbacks are: "
                  "every layer trains from its first step (the run trains the head alone first)")  # fmt: skip
