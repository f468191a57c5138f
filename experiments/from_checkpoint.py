"""A run rebuilt for the commands that read it (``generate``, ``align``, ``probe``, ``attention``): its model and
data from its config files, and, from a checkpoint, its weights and the data's own vocabulary."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from archbench.checkpoint_files import (
    check_checkpoint,
    checkpoint_data,
    checkpoint_task,
    configs_for,
    with_run_config_hint,
)
from archbench.errors import ConfigError, DataError
from datamodules.files import check_writable
from experiments.configs import CommandParser, import_class, is_subclass
from experiments.resume import saved_net

# the commands that read a checkpoint of a task (beside predict and test), for a checkpoint given to another
READ_BY = {
    "Seq2SeqTask": "align",
    "LanguageModelTask": "generate or probe",
    "MaskedLanguageModelTask": "probe",
}


def cli_from_configs(configs: list[str], overrides: list[str], parse_only: bool = False):
    """A run's model and data rebuilt from its config files (no logger); ``parse_only``: the parsed config alone."""
    from experiments.cli import ExperimentCLI

    cli_args = [a for c in configs for a in ("--config", c)] + overrides + ["--trainer.logger=false"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return ExperimentCLI(args=cli_args, run=False, parse_only=parse_only)


def check_data(configs: list[str], overrides: list[str], data_class: type, holds: str) -> None:
    """A DataError, before anything is built, when the configs choose other data than ``data_class``."""
    data = cli_from_configs(configs, overrides, parse_only=True).config.data.class_path
    if not is_subclass(data, data_class):
        raise DataError(f"data: {data} does not hold {holds}")


def cli_from_checkpoint(
    ckpt: str,
    configs: list[str] | None,
    overrides: list[str],
    data_class: type,
    holds: str,
    saved_files: Callable[[dict], dict[str, str]],
):
    """``(cli, checkpoint)``: a trained run rebuilt from ``ckpt`` and its configs (those given, else the run's own
    ``config.yaml``). Configs of other data than ``data_class`` are refused before anything is built. The data
    options ``saved_files(checkpoint)`` gives (``{"data.tokenizer": file text}``: the checkpoint's tokenizer or
    vocabularies) point to files in a temporary folder while the run is built, so the data files need not be on
    disk. A checkpoint of another task is refused, and weights that do not fit in one line that names the run's
    own config."""
    checkpoint = check_checkpoint(ckpt, "--ckpt")
    saved = checkpoint_data(checkpoint)
    found = import_class(saved) if saved else None  # a class not importable here: the configs' check says it
    if found is not None and not issubclass(found, data_class):  # the checkpoint's own data says it first
        task, data = checkpoint_task(checkpoint) or "a model", saved.rsplit(".", 1)[-1]
        # the command that reads such a checkpoint, in place of the config hint (the user may have given none)
        reader = READ_BY.get(task) or ("attention" if data == "TextDataModule" else None)
        raise ConfigError(
            f"--ckpt {ckpt}: a checkpoint of {task} trained on {data} data, which does not hold "
            f"{holds.split(' (use ')[0]}" + (f"; {reader} reads it" if reader else "")
        )
    configs = configs_for(ckpt, configs)
    check_data(configs, overrides, data_class, holds)
    with tempfile.TemporaryDirectory() as folder:
        options = []
        for option, text in saved_files(checkpoint).items():
            path = Path(folder) / f"{option.rsplit('.', 1)[-1]}.json"
            path.write_text(text, encoding="utf-8")
            options.append(f"--{option}={path}")
        cli = cli_from_configs(configs, overrides + options)
        state = checkpoint.get(type(cli.datamodule).__qualname__)
        if state:  # the vocabulary it was trained with (read while its file is there), or an error
            cli.datamodule.load_state_dict(state)
    module = cli.model
    task = checkpoint_task(checkpoint)
    if task and task != type(module).__name__:
        raise ConfigError(f"--ckpt {ckpt}: a checkpoint of {task}, not of {type(module).__name__}")
    # the options the checkpoint's own files replaced (its tokenizer, and with it the size one was trained to)
    # are not this run's data to blame: they name a temporary file
    replaced = {option.rsplit(".", 1)[-1] for option in saved_files(checkpoint)}
    replaced |= {f"{key}_vocab_size" for key in replaced}
    saved_data = {
        k: v for k, v in (checkpoint.get("datamodule_hyper_parameters") or {}).items() if k not in replaced
    }
    try:
        # one line, not torch's key list
        module.refuse_mismatch(
            checkpoint["state_dict"],
            f"--ckpt {ckpt}",
            cli.datamodule,
            saved_data,
            saved_net(checkpoint, ckpt),
        )
    except ConfigError as err:
        raise with_run_config_hint(err, ckpt, configs) from None
    module.load_state_dict(checkpoint["state_dict"])
    return cli, checkpoint


def image_format(path: str) -> str:
    """The picture format a file name asks for (``maps.svg`` -> ``svg``), one matplotlib writes, or a ConfigError."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # not raw pixels, and not pgf (it needs a LaTeX installation to write)
    formats = sorted(f for f in FigureCanvasAgg.get_supported_filetypes() if f not in ("raw", "rgba", "pgf"))
    fmt = Path(path).suffix.lower().removeprefix(".")
    if fmt not in formats:
        raise ConfigError(
            f"--out {path}: name the picture with its format: {', '.join('.' + f for f in formats)}"
        )
    return fmt


def map_command(command: str, description: str, text_help: str, argv: list[str], data_class: type, holds: str,
                saved_files: Callable[[dict], dict[str, str]], drawn: str):  # fmt: skip
    """``(cli, args)`` of a command that draws a run's maps of one text (``attention``, ``align``): its options
    (``--config``, ``--ckpt``, ``--text``, ``--out``; the rest override the run's options) and the run rebuilt
    from ``--ckpt`` (``cli_from_checkpoint``) or, without one, from its configs with untrained weights, said."""
    parser = CommandParser(prog=f"python -m experiments {command}", description=description)
    parser.add_argument(
        "--config",
        action="append",
        help="the run's config file(s), in order; empty: the --ckpt run's config.yaml",
    )
    parser.add_argument("--ckpt", help="checkpoint to load; empty: untrained weights")
    parser.add_argument("--text", required=True, help=text_help)
    parser.add_argument(
        "--out",
        default=f"{drawn}.png",
        help=f"picture to write, its format by its name: .png, .svg, .pdf, .jpg, ... (default: {drawn}.png)",
    )
    args, overrides = parser.parse_known_args(argv)
    check_writable(args.out, "--out")  # before the model is built
    args.format = image_format(args.out)
    if not args.text.strip():
        raise ConfigError(f"{command} --text: {args.text!r} holds no symbols; give {text_help}")
    if not args.config and not args.ckpt:
        raise ConfigError(f"{command}: give --config (the model to draw) or --ckpt (a run's checkpoint)")
    if args.ckpt:
        return cli_from_checkpoint(args.ckpt, args.config, overrides, data_class, holds, saved_files)[0], args
    check_data(args.config, overrides, data_class, holds)
    print(f"{command}: no --ckpt, so these are the {drawn} maps of untrained weights")
    return cli_from_configs(args.config, overrides), args
