"""compare's launchers with real processes: the local launcher's worker pool (2 workers on the CPU) gives the
sequential launcher's results, reports a killed run with its log and resumes only that run; submitit's
LocalExecutor stands in for SLURM."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import CNN, ROOT, TINY_DATA

from archbench.errors import ConfigError, RunsFailedError
from experiments.compare import main as compare
from experiments.launchers import parse_devices

RUN = [*TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]


def _comparison(folder, out: str, **extra) -> str:
    """A 2 x 2 comparison: the CNN, and the CNN again with a fault that kills the first run of all at step 3."""
    killed = yaml.safe_load(Path(CNN).read_text())
    # 4 steps an epoch, validated (and last.ckpt written) after steps 2 and 4: killed at 3, resumed from 2
    fault = {"class_path": "faults.KillOnce", "init_args": {"step": 3, "marker": str(folder / "killed-once")}}
    killed["trainer"] = {"callbacks+": [fault]}
    (folder / "killed.yaml").write_text(yaml.safe_dump(killed))
    spec = {"name": out, "seeds": 2, "out": str(folder / out), "metric": "test/pearson",
            "config": [str(ROOT / "experiments" / "dna" / "base.yaml")],  # killed.yaml is outside experiments/
            "models": {"CNN": CNN, "Killed": str(folder / "killed.yaml")}, **extra}  # fmt: skip
    path = folder / f"{out}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _results(folder, out: str) -> dict:
    runs = json.loads((folder / out / "results.json").read_text())["runs"]
    return {(r["model"], r["seed"]): r["test"] for r in runs}


def test_local_launcher_reports_a_killed_run_resumes_only_it_and_matches_sequential(in_tmp, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))  # faults, in workers
    config = _comparison(in_tmp, "parallel")
    with pytest.raises(
        RunsFailedError, match=r"1 of 4 runs failed.*Killed, seed \d: exit status -9 \(killed\)"
    ):
        compare(["--config", config, "--launcher", "local", "--devices", "0,1", *RUN])
    first = _results(in_tmp, "parallel")
    assert len(first) == 3  # the others were kept and tabled
    (killed,) = {("Killed", 0), ("Killed", 1)} - set(first)
    log = in_tmp / "parallel" / "runs" / f"Killed-seed{killed[1]}" / "launcher.log"
    assert log.is_file()
    stamps = {
        k: (in_tmp / "parallel" / "runs" / f"{k[0]}-seed{k[1]}" / "result.json").stat().st_mtime
        for k in first
    }
    compare(["--config", config, "--launcher", "local", "--devices", "2", *RUN])  # again: only that run
    second = _results(in_tmp, "parallel")
    assert len(second) == 4 and all(second[k] == first[k] for k in first)
    assert all((in_tmp / "parallel" / "runs" / f"{k[0]}-seed{k[1]}" / "result.json").stat().st_mtime == t
               for k, t in stamps.items())  # fmt: skip
    assert "resuming from" in log.read_text()

    compare(["--config", _comparison(in_tmp, "sequential"), *RUN])  # in this process, none killed now
    sequential = _results(in_tmp, "sequential")
    for key, test in sequential.items():  # workers use 1 thread each, this process 2: float sums may differ
        assert second[key] == pytest.approx(test, rel=1e-3, abs=1e-4), key


def test_submitit_local_executor_runs_the_comparison_as_a_job_array(in_tmp, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    (in_tmp / "killed-once").touch()  # no kill in this one
    config = _comparison(in_tmp, "array", launcher="slurm", slurm={"cluster": "local", "time_min": 5})
    compare(["--config", config, "--seeds", "1", *RUN])
    assert set(_results(in_tmp, "array")) == {("CNN", 0), ("Killed", 0)}
    assert list((in_tmp / "array" / "slurm").rglob("*_log.out"))  # submitit's own job logs


def test_launcher_options_are_checked(in_tmp):
    assert parse_devices("0,1,2,3") == ["0", "1", "2", "3"] and parse_devices("3") == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="not a list of distinct device numbers"):
        parse_devices("0,0")
    with pytest.raises(ConfigError, match="slurm: got an unexpected keyword argument 'partion'"):
        compare(["--config", _comparison(in_tmp, "typo", launcher="slurm", slurm={"partion": "gpu"}), *RUN])


def test_a_metric_the_runs_do_not_log_stops_the_comparison_and_keeps_what_finished(in_tmp, monkeypatch):
    """A misspelt metric stops at the first run's sanity-check validation, before a step trains, naming what the
    runs log; one that only the test split lacks, when the first run has tested (that run kept, so the re-run
    with the metric corrected trains only the others)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    path, out = in_tmp / "typo.yaml", in_tmp / "typo"

    def with_metric(metric: str) -> list[str]:
        spec = {"name": "typo", "seeds": 2, "out": str(out), "metric": metric, "models": {"CNN": CNN}}
        path.write_text(yaml.safe_dump(spec))
        return ["--config", str(path), *RUN]

    with pytest.raises(
        ConfigError, match=r"typo.yaml:\d+: metric: 'pearson' is not a test metric \(test/...\)"
    ):
        compare(with_metric("pearson"))
    with pytest.raises(
        ConfigError,
        match=r"typo.yaml:\d+: metric: 'test/pre': 'val/pre' is not logged at validation \(the runs log val/loss, "
        r"val/mse, val/pearson, val/r2, val/spearman\)",
    ):
        compare(with_metric("test/pre"))
    assert not list(out.rglob("*.ckpt")) and not (out / "runs" / "CNN-seed1").exists()
    # PredictionTask reports its loss at validation only
    with pytest.raises(
        ConfigError, match=r"'test/loss' is not among the metrics the runs report \(test/mse, "
    ):
        compare(with_metric("test/loss"))
    first = out / "runs" / "CNN-seed0" / "result.json"
    kept = first.stat().st_mtime_ns
    assert not (out / "runs" / "CNN-seed1").exists() and not (out / "results.json").exists()
    compare(with_metric("test/pearson"))
    assert first.stat().st_mtime_ns == kept and len(_results(in_tmp, "typo")) == 2
