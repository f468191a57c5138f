"""Sweeps with Optuna: 4 trials in 2 worker processes sharing one journal file, a best-config YAML that fit takes,
W&B runs in one group, a pruned trial that stops early, and a bad search space named."""

import json

import pytest
import torch
import yaml
from conftest import CSV_ONLY, ROOT, TINY_DATA
from wandb_offline import find_runs, read_run

from archbench.errors import ConfigError
from experiments.cli import ExperimentCLI
from experiments.sweep import Sweep, main

LSTM = str(ROOT / "experiments" / "dna" / "lstm.yaml")
RUN = [*TINY_DATA, "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"]  # 4 validations a trial


def _sweep(folder, **extra) -> str:
    spec = {"name": "tiny", "configs": [LSTM], "metric": "val/pearson", "direction": "maximize", "trials": 4,
            "space": {"model.optimizer.init_args.lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2},
                      "model.net.init_args.hidden_size": {"type": "int", "low": 8, "high": 32}},
            "pruner": "none", "out": str(folder / "sweep"), **extra}  # fmt: skip
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_two_workers_share_one_study_and_the_best_config_fits(in_tmp, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    main(["--config", _sweep(in_tmp), "--workers", "2", *RUN])
    trials = json.loads((in_tmp / "sweep" / "trials.json").read_text())["trials"]
    assert len(trials) == 4 and {t["state"] for t in trials} == {"COMPLETE"}
    assert (
        len({t["number"] for t in trials}) == 4
        and len({t["params"]["model.optimizer.init_args.lr"] for t in trials}) == 4
    )
    runs = [read_run(r)["run"] for r in find_runs(in_tmp / "sweep")]
    assert len(runs) == 4 and {r["group"] for r in runs} == {"tiny"}
    best = max(trials, key=lambda t: t["value"])
    saved = yaml.safe_load((in_tmp / "sweep" / "best.yaml").read_text())
    assert saved["model"]["optimizer"]["init_args"]["lr"] == best["params"]["model.optimizer.init_args.lr"]
    cli = ExperimentCLI(args=["--config", LSTM, "--config", str(in_tmp / "sweep" / "best.yaml"), *TINY_DATA,
                              *CSV_ONLY], run=False)  # fmt: skip
    assert cli.model.net.rnn.hidden_size == best["params"]["model.net.init_args.hidden_size"]


def test_a_pruned_trial_stops_at_its_first_validation(in_tmp, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # No Pearson correlation reaches 2: the threshold pruner stops every trial at its first report.
    config = _sweep(in_tmp, trials=2, pruner="threshold", threshold={"lower": 2.0})
    with pytest.raises(Exception, match="no trial completed"):
        main(["--config", config, *RUN])
    trials = json.loads((in_tmp / "sweep" / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["PRUNED", "PRUNED"]
    assert all(t["steps_reported"] == 1 for t in trials)  # of 4 validations
    last = torch.load(in_tmp / "sweep" / "trial-0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # of 8: stopped at the first validation


def test_a_bad_search_space_is_named(in_tmp):
    bad = _sweep(in_tmp, space={"model.optimizer.init_args.lr": {"type": "log_uniform", "low": 0, "high": 1}})
    with pytest.raises(
        ConfigError, match=r"space.model.optimizer.init_args.lr: log_uniform needs low > 0, got 0"
    ):
        Sweep.load(bad)
    bad = _sweep(in_tmp, space={"x": {"type": "normal", "low": 0, "high": 1}})
    with pytest.raises(
        ConfigError, match=r"space.x.type: 'normal' is not one of log_uniform, uniform, int, choice"
    ):
        Sweep.load(bad)
