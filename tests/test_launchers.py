"""compare's launchers with real processes: the local launcher's worker pool (2 workers on the CPU) gives the
sequential launcher's results and reports a killed run with its log, which a re-run alone resumes; submitit's
LocalExecutor stands in for SLURM."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CNN, ROOT, TINY_DATA

from archbench.errors import ConfigError, DataError, RunsFailedError
from experiments.compare import main as compare
from experiments.launchers import parse_devices

DNA = f"{ROOT}/experiments/dna"
RUN = [*TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]


def _comparison(folder, out: str, **extra) -> str:
    """A 2 x 2 comparison: the CNN, and the CNN again with a fault that kills the first run of all at step 3."""
    killed = yaml.safe_load(Path(CNN).read_text())
    # 4 steps an epoch, validated (and last.ckpt written) after steps 2 and 4: killed at 3, resumed from 2
    fault = {"class_path": "faults.KillOnce", "init_args": {"step": 3, "marker": str(folder / "killed-once")}}
    killed["trainer"] = {"callbacks+": [fault]}
    (folder / "killed.yaml").write_text(yaml.safe_dump(killed))
    # out as users write it, relative: the workers are given it resolved, and a re-run must still find its runs
    # the same (trial 27: every re-run of a local launcher's relative out was refused as other settings)
    spec = {"name": out, "seeds": 2, "out": out, "metric": "test/pearson",
            "config": [str(ROOT / "experiments" / "dna" / "base.yaml")],  # killed.yaml is outside experiments/
            "models": {"CNN": CNN, "Killed": str(folder / "killed.yaml")}, **extra}  # fmt: skip
    path = folder / f"{out}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _results(folder, out: str) -> dict:
    runs = json.loads((folder / out / "results.json").read_text())["runs"]
    return {(r["model"], r["seed"]): r["test"] for r in runs}


def test_local_launcher_reports_a_killed_run_which_a_rerun_alone_resumes_and_matches_sequential(
    in_tmp, monkeypatch, capsys
):
    """Two workers, one run killed: reported with its log, the other tabled; the re-run (sequential, in this
    process) resumes only the killed run; both equal a sequential comparison's."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))  # faults, in workers
    monkeypatch.setenv("WANDB_MODE", "disabled")  # no W&B service to start in each worker (tested elsewhere)
    config = _comparison(in_tmp, "parallel")
    one = ["--seeds", "1"]  # two runs on two workers at once: the CNN's and the one killed
    with (
        monkeypatch.context() as patched,
        pytest.raises(
            RunsFailedError, match=r"1 of 2 runs failed.*Killed, seed 0: exit status -9 \(killed\)"
        ),
    ):
        patched.setattr(os, "sched_getaffinity", lambda pid: {0})  # as on a machine of one core: said
        compare(["--config", config, *one, "--launcher", "local", "--devices", "0,1", *RUN])
    assert "warning: --devices: 2 CPU workers on 1 core: they share them" in capsys.readouterr().out
    first = _results(in_tmp, "parallel")
    assert set(first) == {("CNN", 0)}  # the other was kept and tabled
    table = (in_tmp / "parallel" / "results.md").read_text()
    assert "process kept" not in table  # a process per run
    killed = ("Killed", 0)
    log = in_tmp / "parallel" / "runs" / f"Killed-seed{killed[1]}" / "launcher.log"
    assert log.is_file()
    # the files say which run the table lacks and why (trial 19: the console alone said it)
    assert f"Not in the table: Killed seed 0 (failed: exit status -9 (killed); log: {log})." in table
    (missing,) = json.loads((in_tmp / "parallel" / "results.json").read_text())["missing"]
    assert (missing["model"], missing["seed"]) == killed and str(log) in missing["why"]
    stamps = {
        k: (in_tmp / "parallel" / "runs" / f"{k[0]}-seed{k[1]}" / "result.json").stat().st_mtime
        for k in first
    }
    capsys.readouterr()
    # again: only that run. Which runs to start is decided before any launcher, so this process (the sequential
    # launcher) stands in for a third worker and its interpreter start (a quarter of this test's time).
    compare(["--config", config, *one, "--launcher", "sequential", *RUN])
    said = capsys.readouterr().out
    assert "CNN, seed 0: finished earlier, kept" in said and "CNN, seed 0: started" not in said
    assert "Killed, seed 0: resuming from" in said and "last.ckpt" in said
    second = _results(in_tmp, "parallel")
    assert len(second) == 2 and all(second[k] == first[k] for k in first)
    assert all((in_tmp / "parallel" / "runs" / f"{k[0]}-seed{k[1]}" / "result.json").stat().st_mtime == t
               for k, t in stamps.items())  # fmt: skip

    compare(["--config", _comparison(in_tmp, "sequential"), *one, *RUN])  # in this process, none killed now
    sequential = _results(in_tmp, "sequential")
    for key, test in sequential.items():  # workers use 1 thread each, this process 2: float sums may differ
        assert second[key] == pytest.approx(test, rel=1e-3, abs=1e-4), key


def test_sigterm_to_the_local_launcher_stops_its_workers_which_save_their_step(in_tmp, monkeypatch):
    """``kill`` of ``compare --launcher local`` (a scheduler's time limit): the workers are told too, each run
    ends its step and saves it, and the launcher waits for them and stops with SIGTERM's message; before, the
    launcher alone died and its workers trained on unattended."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))  # faults, in workers
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = yaml.safe_load(Path(CNN).read_text())
    spec["trainer"] = {"callbacks+": [{"class_path": "faults.TermParentAt", "init_args": {"step": 2}}]}
    (in_tmp / "term.yaml").write_text(yaml.safe_dump(spec))
    comparison = {"name": "term", "seeds": 1, "out": str(in_tmp / "term"), "metric": "test/pearson",
                  "config": [str(ROOT / "experiments" / "dna" / "base.yaml")],
                  "models": {"Term": str(in_tmp / "term.yaml")}}  # fmt: skip
    (in_tmp / "term-compare.yaml").write_text(yaml.safe_dump(comparison))
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    received = []  # this test's process is the launcher: without the launcher's handler, pytest would end here

    def ours(*_):
        received.append(True)

    before = signal.signal(signal.SIGTERM, ours)
    try:
        with pytest.raises(SIGTERMException) as stopped:
            compare(["--config", str(in_tmp / "term-compare.yaml"), "--launcher", "local", "--devices", "0,1",
                     *TINY_DATA, "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"])  # fmt: skip
        assert not received and signal.getsignal(signal.SIGTERM) is ours  # the launcher's, then ours again
    finally:
        signal.signal(signal.SIGTERM, before)
    assert "the runs under way stopped" in stopped.value.said and "resumes them" in stopped.value.said
    run = in_tmp / "term" / "runs" / "Term-seed0"
    assert not (run / "result.json").exists()  # it did not train on to the end (8 steps)
    log = (run / "launcher.log").read_text().splitlines()
    assert log[-1].startswith("terminated (SIGTERM): the run stopped after a whole step, saved in"), log[-5:]
    saved = Path(log[-1].split("saved in ")[1].split(";")[0])
    # 4 steps an epoch, validated (and saved) after steps 2 and 4: step 2 ended and was saved, not the last save
    assert torch.load(saved, weights_only=True)["global_step"] == 3


def test_the_command_says_the_launchers_sigterm_in_one_line_with_the_shells_status(monkeypatch, capsys):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import experiments.compare
    from experiments.__main__ import main

    def terminated(argv):
        err = SIGTERMException()
        err.said = "the runs under way stopped"
        raise err

    monkeypatch.setattr(experiments.compare, "main", terminated)
    assert main(["compare", "--config", "c.yaml"]) == 143
    assert capsys.readouterr().err == "terminated (SIGTERM): the runs under way stopped\n"


@pytest.mark.slow  # 27 s (make test-all); the local launcher stays in the default suite
def test_submitit_local_executor_runs_the_comparison_as_a_job_array(in_tmp, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    (in_tmp / "killed-once").touch()  # no kill in this one
    config = _comparison(in_tmp, "array", launcher="slurm", slurm={"cluster": "local", "time_min": 5})
    compare(["--config", config, "--seeds", "1", *RUN])
    assert set(_results(in_tmp, "array")) == {("CNN", 0), ("Killed", 0)}
    assert list((in_tmp / "array" / "slurm").rglob("*_log.out"))  # submitit's own job logs


def test_a_row_that_fails_while_training_leaves_the_sequential_launcher_going_as_a_worker_would(in_tmp):
    """Trial 27: a row whose loss went NaN stopped the sequential launcher there, with no table of the rows that
    had finished or would have; the local launcher reported it under the table with its log and went on. Now
    both do: the failed run is said with its error.log, the others train and are tabled."""
    nan = yaml.safe_load(Path(CNN).read_text())
    nan["model"]["optimizer"] = {"class_path": "torch.optim.SGD", "init_args": {"lr": 1e12}}
    (in_tmp / "nan.yaml").write_text(yaml.safe_dump(nan))
    spec = {"name": "nan", "seeds": 1, "out": "nan", "metric": "test/pearson",
            "config": [str(ROOT / "experiments" / "dna" / "base.yaml")],
            "models": {"NaN": str(in_tmp / "nan.yaml"), "CNN": CNN}}  # fmt: skip
    (in_tmp / "nan-cmp.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(
        RunsFailedError, match=r"1 of 2 runs failed.*NaN, seed 0: training loss is (nan|inf) at "
    ):
        compare(["--config", str(in_tmp / "nan-cmp.yaml"), *RUN])
    assert set(_results(in_tmp, "nan")) == {("CNN", 0)}  # the row after the failed one trained
    log = in_tmp / "nan" / "runs" / "NaN-seed0" / "error.log"
    assert "NonFiniteLossError" in log.read_text()
    said = (in_tmp / "nan" / "results.md").read_text()
    assert "Not in the table: NaN seed 0 (failed: training loss is" in said and f"; log: {log})." in said


def test_launcher_options_are_checked(in_tmp, monkeypatch):
    assert parse_devices("0,1,2,3") == ["0", "1", "2", "3"] and parse_devices("3") == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="not a list of distinct device numbers"):
        parse_devices("0,0")
    with pytest.raises(
        ConfigError, match="not a list of distinct device numbers"
    ):  # trial 27: one worker, unsaid
        parse_devices("")
    with pytest.raises(
        ConfigError, match=r"typo.yaml:\d+: slurm.partion: not an option \(did you mean 'partition'\?\)"
    ):
        compare(["--config", _comparison(in_tmp, "typo", launcher="slurm", slurm={"partion": "gpu"}), *RUN])
    with pytest.raises(ConfigError, match=r"--devices 0,1: only the local launcher takes devices, and this "
                                          r"comparison's launcher is sequential"):  # fmt: skip
        compare(["--config", _comparison(in_tmp, "seq"), "--devices", "0,1", *RUN])
    # SLURM where there is none: said before any run or tuning, not as submitit's traceback at the first submit
    monkeypatch.setenv("PATH", str(in_tmp))  # no sbatch on it
    with pytest.raises(ConfigError, match=r"^launcher slurm: no SLURM on this machine \(no sbatch command\); .*"
                                          r"set slurm: \{cluster: local\} in .*seq.yaml"):  # fmt: skip
        compare(["--config", _comparison(in_tmp, "seq"), "--launcher", "slurm", *RUN])
    assert not (in_tmp / "seq" / "runs").exists()


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
    # the first run's folder goes with it (nothing trained), and its W&B run (no aborted run for wandb sync);
    # the second never began; and --out, which this command made (trial 30: left behind empty)
    assert not out.exists()
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


def test_a_shared_setting_lightning_would_refuse_in_every_run_stops_the_comparison_at_its_line(in_tmp):
    """Trial 31: a val_check_interval past an epoch's batches, set in the comparison's config: for every row, was
    Lightning's own message once per run (each leaving a folder), then "no run finished" in 2,500 characters."""
    path, out = in_tmp / "vci.yaml", in_tmp / "vci"
    spec = {"name": "vci", "seeds": 2, "out": str(out), "models": {"CNN": CNN},
            "config": [{"trainer": {"val_check_interval": 50}}]}  # fmt: skip
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ConfigError, match=r"^.*vci.yaml:6: config: trainer.val_check_interval: 50 batches, but an "
                                          r"epoch here holds \d+: give at most \d+"):  # fmt: skip
        compare(["--config", str(path), *RUN])
    assert not out.exists()


def test_float16_on_the_cpu_is_refused_for_a_run_that_trains_not_for_reading_a_runs_config(in_tmp):
    """A GPU run's config read on a laptop (export, a finished comparison's table) builds; a run that would train
    in bf16-mixed while its config says 16-mixed (trial 32) is refused, its row named."""
    from experiments.cli import ExperimentCLI

    # on the CPU, asked for: refused there on any machine, one with a GPU too
    on_cpu = ["--trainer.accelerator=cpu", "--trainer.precision=16-mixed"]
    cli = ExperimentCLI(args=["--config", CNN, *TINY_DATA, *on_cpu, "--trainer.logger=false"], run=False)
    with pytest.raises(ConfigError, match=r"^trainer.precision: 16-mixed \(float16 autocast\) needs a GPU"):
        cli.refuse_fp16_on_cpu()
    path = in_tmp / "fp16.yaml"
    path.write_text(
        yaml.safe_dump({"name": "fp16", "seeds": 1, "out": str(in_tmp / "fp16"), "models": {"CNN": CNN}})
    )
    with pytest.raises(ConfigError, match=r"fp16.yaml: models.CNN \(.*cnn.yaml\): trainer.precision: 16-mixed "
                                          r"\(float16 autocast\) needs a GPU, .* \(--trainer.precision was given on "
                                          r"the command line, to every row\)$"):  # fmt: skip
        compare(["--config", str(path), *RUN, *on_cpu])
    assert not (in_tmp / "fp16").exists()


def _user_file(folder, name: str, keep: tuple[str, ...] = ("model",)) -> str:
    """A row file outside experiments/ (so it loads no modality base itself): the DNA LSTM's listed sections."""
    spec = yaml.safe_load((ROOT / "experiments" / "dna" / "lstm.yaml").read_text())
    (folder / name).write_text(yaml.safe_dump({k: v for k, v in spec.items() if k in keep}))
    return name


def _spec(folder, models: dict, **extra) -> str:
    path = folder / "mine.yaml"
    path.write_text(
        yaml.safe_dump({"name": "mine", "seeds": 1, "out": str(folder / "out"), "models": models, **extra})
    )
    return str(path)


def test_a_row_outside_experiments_gets_the_comparisons_modality_base_and_other_bases_are_refused(
    in_tmp, capsys
):
    """A user's own row file trains on the same data and budget rule (dna/base.yaml) as the built-in rows beside
    it; rows of two modalities are refused, naming the rows and the bases."""
    from experiments.compare import Comparison

    base = ROOT / "experiments" / "dna" / "base.yaml"
    comparison = Comparison.load(_spec(in_tmp, {"CNN": CNN, "MyLSTM": _user_file(in_tmp, "my_lstm.yaml")}))
    for row in ("CNN", "MyLSTM"):
        args = comparison.run_args(row)
        assert args[:2] == ["--config", str(base)] and args.count(str(base)) == 1, row
    assert comparison.without_own_base() == ["MyLSTM"]
    text = str(ROOT / "experiments" / "text" / "lstm.yaml")
    with pytest.raises(ConfigError, match=r"mine.yaml: models: the rows load different modality bases \((CNN: "
                       r".*dna/base.yaml; Text: .*text/base.yaml|Text: .*text/base.yaml; CNN: .*dna/base.yaml)\)"):  # fmt: skip
        Comparison.load(_spec(in_tmp, {"CNN": CNN, "Text": text}))


def test_a_row_that_does_not_build_stops_the_comparison_before_any_row_trains(in_tmp, capsys):
    typo = yaml.safe_load((in_tmp / _user_file(in_tmp, "typo.yaml")).read_text())
    (in_tmp / "typo.yaml").write_text(yaml.safe_dump({**typo, "trainer": {"max_epoch": 3}}))
    with pytest.raises(ConfigError, match=r"mine.yaml: models.Typo \(typo.yaml\): .*max_epoch"):
        compare(["--config", _spec(in_tmp, {"CNN": CNN, "Typo": "typo.yaml"}), *RUN])
    assert not (in_tmp / "out").exists()
    with pytest.raises(ConfigError, match=r"models.MyLSTM \(my_lstm.yaml\): data: no datamodule chosen"):
        compare(["--config", _spec(in_tmp, {"MyLSTM": _user_file(in_tmp, "my_lstm.yaml")}), *RUN])
    assert not (in_tmp / "out").exists()
    # only the user's own files: the plan says that no modality base is loaded (no epoch bound, no bucketing)
    said = capsys.readouterr().out
    assert "compare: no modality base: every file is outside experiments/" in said
    # a path that works written in this file, which is outside the project (trial 24: it said experiments/...)
    assert f"(list {ROOT / 'experiments' / '<modality>' / 'base.yaml'} under config:" in said
    base = str(ROOT / "experiments" / "dna" / "base.yaml")  # as that line advises: then it says nothing of it
    with pytest.raises(ConfigError, match=r"models.Typo \(typo.yaml\): .*max_epoch"):
        compare(["--config", _spec(in_tmp, {"Typo": "typo.yaml"}, config=[base]), *RUN])
    assert "no modality base" not in capsys.readouterr().out
    # a misspelt key in the comparison's own config: mapping is said there, not as the first row's (trial 19)
    with pytest.raises(ConfigError, match=r"mine.yaml:\d+: config: trainer.max_epochss: Group 'trainer' does not "
                                          r"accept option 'max_epochss' \(did you mean 'max_epochs'\?\)$"):  # fmt: skip
        compare(
            ["--config", _spec(in_tmp, {"CNN": CNN}, config=[base, {"trainer": {"max_epochss": 1}}]), *RUN]
        )
    # a value only a constructor refuses, set in the shared mapping: said there, not as the first row's fault
    with pytest.raises(
        DataError, match=r"mine.yaml:\d+: config: data.val_fraction: 1.5 is outside \[0, 1\)$"
    ):
        compare(
            [
                "--config",
                _spec(in_tmp, {"CNN": CNN, "GRU": f"{DNA}/gru.yaml"}, config={"data.val_fraction": 1.5}),
                *RUN,
            ]
        )
    assert not (in_tmp / "out").exists()
    # a net's option shared by every row: the rows' files choose the net after it, so the parser cannot take it
    with pytest.raises(ConfigError, match=r"mine.yaml:\d+: config: model.net.init_args.nhead: a net's option cannot "
                       r"be shared here: .* on the command line \(--model.net.init_args.nhead=5\) or in each row's"):  # fmt: skip
        compare(
            [
                "--config",
                _spec(
                    in_tmp,
                    {"T": f"{DNA}/transformer.yaml"},
                    config={"model": {"net": {"init_args": {"nhead": 5}}}},
                ),
                *RUN,
            ]
        )
    # an option only the net's constructor refuses (trial 11: the comparison stopped at this row with neither the
    # file nor the row named): said when the row's run starts, named as the parsed options are
    transformer = yaml.safe_load((ROOT / "experiments" / "dna" / "transformer.yaml").read_text())
    transformer["model"]["net"]["init_args"]["moe"] = {"experts": 2, "top_k": 4}
    (in_tmp / "moe.yaml").write_text(yaml.safe_dump(transformer))
    with pytest.raises(ConfigError, match=r"mine.yaml: models.Bad \(moe.yaml:\d+\): model.net.init_args.moe.top_k: 4 is "
                       r"not between 1 and moe.experts \(2\)$"):  # fmt: skip
        compare(
            ["--config", _spec(in_tmp, {"Bad": "moe.yaml", "CNN": CNN}, out=str(in_tmp / "moe_out")), *RUN]
        )
    assert not list((in_tmp / "moe_out").rglob("*.ckpt"))  # the first row (safe_dump sorts): nothing trained


def test_a_comparison_of_validation_metrics_needs_no_test_split(in_tmp, monkeypatch):
    """validate: true with no test data (test_fraction 0): the table of validation metrics, not the empty test
    split's refusal that a plain ``test`` command gets."""
    import json

    from datamodules.dna_io import write_text
    from datamodules.dna_simulator import simulate

    monkeypatch.setenv("WANDB_MODE", "offline")
    write_text(in_tmp / "d.txt", simulate(80, seq_len=40, seed=1).data)
    run = [f"--data.train_path={in_tmp / 'd.txt'}", "--data.test_fraction=0", "--data.batch_size=16",
           "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
    compare(["--config", _spec(in_tmp, {"CNN": CNN}, validate=True, metric="val/pearson"), *run])
    (result,) = json.loads((in_tmp / "out" / "results.json").read_text())["runs"]
    assert result["test"] == {} and "val/pearson" in result["val"]


def test_a_data_file_changed_in_place_is_refused_naming_it(in_tmp, monkeypatch):
    """Same path, other contents: not the runs' data any more, so the table is not printed again from them."""
    from datamodules.dna_io import write_text
    from datamodules.dna_simulator import simulate

    monkeypatch.setenv("WANDB_MODE", "offline")
    data = in_tmp / "mut.txt"
    write_text(data, simulate(90, seq_len=40, seed=1).data)
    run = [f"--data.train_path={data}", "--data.batch_size=16", "--trainer.max_epochs=1",
           "--trainer.enable_progress_bar=false"]  # fmt: skip
    config = _spec(in_tmp, {"CNN": CNN})
    compare(["--config", config, *run])
    compare(["--config", config, *run])  # unchanged: kept
    write_text(data, simulate(90, seq_len=40, seed=2).data)
    with pytest.raises(ConfigError, match=rf"CNN-seed0: data file {data} changed since this run was made"):
        compare(["--config", config, *run])


def test_a_data_folder_is_fingerprinted_by_its_files_and_a_cache_is_not(tmp_path, monkeypatch):
    """Image folders and tokenizer folders changed in place are told apart as data files are; a fingerprint
    only one side has (run folders of versions that did not fingerprint folders) is no change."""
    from jsonargparse import Namespace

    from datamodules.files import fingerprint
    from experiments.compare import DATA_FILE, _changed_files, _data_files

    images, cache, out = tmp_path / "images", tmp_path / "cache", tmp_path / "images" / "out"
    (images / "cat").mkdir(parents=True)
    cache.mkdir()
    (images / "cat" / "1.png").write_bytes(b"one")
    data = Namespace(train_path=str(images), cache_dir=str(cache), other=str(cache))  # not data settings
    config = Namespace(data=data, model=Namespace(lr=0.1))
    before = _data_files(config, out)
    assert list(before) == [str(images)] and before[str(images)].startswith("files:1,")
    (out / "runs").mkdir(parents=True)  # a comparison writing inside the data folder
    (out / "runs" / "last.ckpt").write_bytes(b"weights")
    (images / ".DS_Store").write_bytes(b"finder")
    assert _data_files(config, out) == before
    (images / "cat" / "2.png").write_bytes(b"two")
    after = fingerprint(images, out)
    assert after != before[str(images)] and after.startswith("files:2,")
    (images / "cat" / "2.png").write_bytes(b"three")  # same name, other contents (size)
    assert fingerprint(images, out) != after

    settings = "model: x\n"
    old, new = settings, settings + f"{DATA_FILE}{images} {after}\n"
    assert _changed_files(old, new) == []
    assert _changed_files(new, settings + f"{DATA_FILE}{images} {fingerprint(images, out)}\n") == [
        str(images)
    ]
    assert _changed_files(new, "model: y\n" + new.split("\n", 1)[1]) is None
    monkeypatch.setattr("datamodules.files.HASHED_BYTES", 1)  # a big file: its size and time, one word too
    big = fingerprint(images / "cat" / "1.png")
    assert big.startswith("size:3,")
    assert _changed_files(f"{DATA_FILE}/a {big}", f"{DATA_FILE}/a {big}x") == ["/a"]
    earlier = f"{DATA_FILE}/a b/big.txt size:3 mtime_ns:5\n"  # the two-word form of earlier versions
    assert _changed_files(earlier, f"{DATA_FILE}/a b/big.txt size:3,mtime_ns:5\n") == []
    assert _changed_files(earlier, f"{DATA_FILE}/a b/big.txt size:4,mtime_ns:5\n") == ["/a b/big.txt"]
