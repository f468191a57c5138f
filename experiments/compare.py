"""``python -m experiments compare``: every listed model x seed, same data, same budget, one table.

Each run is an ordinary ``fit`` + ``test`` through :class:`ExperimentCLI`. Configs apply in this order,
later winning: the defaults (``experiments/dna/base.yaml``), the comparison file's shared ``config`` (settings
and/or config files, in order), the
model's own file, then the user's ``--data.* / --model.* / --trainer.*`` overrides.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from datamodules.files import write_atomic
from experiments.callbacks import RunStats
from experiments.cli import ExperimentCLI
from experiments.errors import ConfigError
from experiments.loggers import AutoWandbLogger, wandb_mode
from experiments.report import summarize, write_outputs
from experiments.resume import WANDB_ID_KEY, checkpoint_info


@dataclass
class Comparison:
    path: Path
    models: dict[str, Path]
    name: str = "comparison"
    seeds: int = 3
    out: str = "runs/compare"
    project: str = "archbench"
    metric: str = "test/pearson"
    config: list[dict | Path] = field(default_factory=list)  # shared settings and files, in order

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with 'models', found {type(raw).__name__}")
        known = {"name", "seeds", "out", "project", "metric", "config", "models"}
        for key in raw:
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r}; expected one of {sorted(known)}")
        models = raw.get("models")
        if not isinstance(models, dict) or not models:
            raise ConfigError(f"{path}: 'models' must map model names to config files, found {models!r}")
        resolved = {}
        for name, file in models.items():
            model_path = (path.parent / str(file)).resolve()
            if not model_path.is_file():
                raise ConfigError(f"{path}: models.{name}: file {file!r} not found (looked at {model_path})")
            resolved[str(name)] = model_path
        seeds = raw.get("seeds", 3)
        if not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"{path}: seeds: {seeds!r} is not a positive integer")
        config = raw.get("config") or []
        entries = config if isinstance(config, list) else [config]
        for i, entry in enumerate(entries):
            if isinstance(entry, str):
                file = (path.parent / entry).resolve()
                if not file.is_file():
                    raise ConfigError(f"{path}: config: file {entry!r} not found (looked at {file})")
                entries[i] = file
            elif not isinstance(entry, dict):
                raise ConfigError(
                    f"{path}: config: expected settings or a config file (or a list of them), found {entry!r}"
                )
        config = entries
        fields = {k: raw[k] for k in ("name", "out", "project", "metric") if k in raw}
        return cls(path=path, models=resolved, seeds=seeds, config=config, **fields)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m experiments compare",
        description="Train every model of a comparison file x seed on the same data and budget; write "
        "results.json, results.md and comparison.png. Other options (--data.*, --model.*, --trainer.*) "
        "are passed to every run, as for 'fit'.",
    )
    parser.add_argument("--config", required=True, help="comparison file, e.g. experiments/dna/compare.yaml")
    parser.add_argument("--seeds", type=int, help="seeds per model (0..N-1); overrides the file")
    parser.add_argument("--out", help="output folder; overrides the file")
    parser.add_argument("--models", help="comma-separated subset of the file's models")
    args, overrides = parser.parse_known_args(argv)
    for arg in overrides:
        if arg.startswith("--") and not arg.startswith(
            ("--data", "--model", "--trainer", "--seed_everything")
        ):
            parser.error(f"unrecognized option {arg!r}: runs take --data.*, --model.* and --trainer.*")
    return args, overrides


def run_one(comparison: Comparison, model: str, seed: int, out: Path, overrides: list[str]) -> dict:
    run_dir = out / "runs" / f"{model}-seed{seed}"
    args = []
    for entry in comparison.config:
        args += ["--config", str(entry) if isinstance(entry, Path) else yaml.safe_dump(entry)]
    args += ["--config", str(comparison.models[model]), *overrides]
    args += [f"--seed_everything={seed}", f"--trainer.default_root_dir={run_dir}", "--trainer.logger=false"]
    with warnings.catch_warnings():
        # Passing args while sys.argv holds the compare command is intended here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = ExperimentCLI(args=args, run=False)
    # A re-run on the same folder keeps finished runs and resumes unfinished ones, if the settings are the same.
    settings, done, last = (
        run_dir / "run_config.yaml",
        run_dir / "result.json",
        run_dir / "checkpoints" / "last.ckpt",
    )
    dumped = cli.parser.dump(cli.config, skip_none=False)
    if settings.is_file() and settings.read_text() != dumped:
        raise ConfigError(
            f"{run_dir}: this run was made with other settings (see {settings.name} there); "
            "give another --out, or delete the folder to train it again"
        )
    if done.is_file():
        print(f"{model}, seed {seed}: finished earlier, kept ({done})")
        return json.loads(done.read_text())
    if cli.trainer.is_global_zero:
        write_atomic(settings, dumped)
    resume = str(last) if last.is_file() else None
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    wandb_logger = AutoWandbLogger(
        project=comparison.project,
        save_dir=str(out),
        group=comparison.name,
        name=f"{model}-seed{seed}",
        tags=[model, f"seed{seed}"],
        job_type="train",
        id=checkpoint_info(last)[WANDB_ID_KEY] if resume else None,
    )
    trainer.loggers = [CSVLogger(str(run_dir), name="", version=""), wandb_logger]
    stats = RunStats()
    trainer.callbacks.append(stats)
    if trainer.is_global_zero:
        wandb_logger.log_hyperparams({"config": _plain(cli.config), "model_name": model, "seed": seed})
    if resume:
        print(f"{model}, seed {seed}: resuming from {resume}")
    trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
    has_best = trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path
    results = trainer.test(
        module, datamodule=data, ckpt_path="best" if has_best else None, verbose=False, weights_only=True
    )
    test = {k: float(v) for k, v in results[0].items()} if results else {}
    if trainer.is_global_zero:
        wandb_logger.experiment.summary.update({**test, "train_seconds": stats.train_seconds})
        wandb_logger.experiment.finish()
    result = {
        "model": model,
        "seed": seed,
        "params": module.parameter_counts()["params"],
        "test": test,
        "train_seconds": stats.train_seconds,
        "throughput": stats.throughput,
        "peak_memory_mb": stats.peak_memory_mb,
        "noise_ceiling": getattr(data, "noise_ceiling", None),
        "metrics_csv": str(run_dir / "metrics.csv"),
    }
    if trainer.is_global_zero:
        write_atomic(done, json.dumps(result, indent=1) + "\n")
    return result


def _plain(config) -> dict:
    """A jsonargparse Namespace as plain data for W&B (no API key can be in it: keys come from env/netrc)."""
    return json.loads(json.dumps(config.as_dict(), default=str))


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv)
    comparison = Comparison.load(args.config)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ConfigError(f"--seeds: {args.seeds} is not a positive integer")
        comparison.seeds = args.seeds
    if args.out:
        comparison.out = args.out
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        for m in wanted:
            if m not in comparison.models:
                raise ConfigError(
                    f"--models: {m!r} is not in {comparison.path} (has {list(comparison.models)})"
                )
        comparison.models = {m: comparison.models[m] for m in wanted}
    out = Path(comparison.out)
    print(
        f"compare: {len(comparison.models)} models x {comparison.seeds} seeds -> {out} (W&B {wandb_mode()})"
    )
    runs = []
    for model in comparison.models:
        for seed in range(comparison.seeds):
            print(f"\n=== {model}, seed {seed} ===", flush=True)
            runs.append(run_one(comparison, model, seed, out, overrides))
    if rank_zero_only.rank != 0:
        return  # only rank 0 writes results
    report = summarize(runs, comparison.metric)
    table = write_outputs(report, out, comparison.metric)
    _log_table(comparison, out, report)
    print("\n" + table)
    print(f"\nresults: {out / 'results.json'}, {out / 'results.md'}, {out / 'comparison.png'}")


def _log_table(comparison: Comparison, out: Path, report: dict) -> None:
    import wandb

    run = wandb.init(
        project=comparison.project,
        group=comparison.name,
        name=f"{comparison.name}-summary",
        job_type="summary",
        dir=str(out),
        mode=wandb_mode(),
        config={"comparison": comparison.name, "seeds": comparison.seeds, "models": list(comparison.models)},
    )
    columns = list(report["summary"][0].keys())
    run.log(
        {
            "comparison": wandb.Table(
                columns=columns, data=[[row[c] for c in columns] for row in report["summary"]]
            ),
            "comparison_plot": wandb.Image(str(out / "comparison.png")),
        }
    )
    run.finish()
