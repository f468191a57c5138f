"""Sweeps with Optuna: 4 trials in 2 worker processes sharing one journal file, a best-config YAML that fit takes,
W&B runs in one group, a pruned trial that stops early, and a bad search space named."""

import importlib.util
import json
import signal
from pathlib import Path

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


@pytest.mark.slow  # 26 s (make test-all); the one-worker sweeps stay in the default suite
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


def test_a_sweep_run_again_draws_new_trials_and_refuses_other_settings(in_tmp, monkeypatch, recwarn):
    """A second run for more trials does not repeat the first run's draws (the sampler restarted at its seed
    did); a changed metric or direction would score the study on two metrics, so it is refused."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    once = [*TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]
    main(["--config", _sweep(in_tmp, trials=1), *once])
    main(["--config", _sweep(in_tmp, trials=2), *once])  # the budget grows: one more trial
    trials = json.loads((in_tmp / "sweep" / "trials.json").read_text())["trials"]
    assert len(trials) == 2 and trials[0]["params"] != trials[1]["params"]
    # two validations an epoch, one report (Optuna's warning of the second, at every validation, is not shown)
    assert not [w for w in recwarn if "reported value is ignored" in str(w.message)]
    with pytest.raises(ConfigError, match=r"sweep: sweep 'tiny' was run with other settings \(metric, direction; "
                                          r"see settings.json there\).*delete .*sweep to start again"):  # fmt: skip
        main(["--config", _sweep(in_tmp, trials=3, metric="val/loss", direction="minimize"), *once])
    # an option changed is named with its values (trial 16: "args" alone)
    with pytest.raises(ConfigError, match=r"other settings \(args: --trainer.max_epochs=1 -> --trainer.max_epochs=2; "
                                          r"see settings.json there\)"):  # fmt: skip
        main(["--config", _sweep(in_tmp, trials=3), *TINY_DATA, "--trainer.max_epochs=2",
              "--trainer.enable_progress_bar=false"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"other settings \(args: added --data.batch_size 8; see"):
        main(["--config", _sweep(in_tmp, trials=3), *once, "--data.batch_size", "8"])
    # best.yaml says how to use it: after the sweep's configs, with the options the trials ran with (trial 16:
    # without them, it trained on other data)
    usage = (in_tmp / "sweep" / "best.yaml").read_text().splitlines()[1]
    assert usage.startswith(
        "# Use after the sweep's configs, with the options its trials ran with: --config "
    )
    assert usage.endswith(f"--config {in_tmp / 'sweep' / 'best.yaml'} " + " ".join(once))
    # the same options in another order, or with "=" written as a space, are the same settings (trial 20: refused
    # as "added X; left out X"): the study goes on
    main(["--config", _sweep(in_tmp, trials=2), *reversed(once[2:]), *once[:2]])
    spaced = [part for option in once for part in option.split("=", 1)]
    main(["--config", _sweep(in_tmp, trials=2), *spaced])


def test_a_misspelt_key_of_the_space_stops_before_anything_is_written(in_tmp):
    space = {"model.optimizer.init_args.lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2},
             "model.net.init_args.hiden_size": {"type": "int", "low": 8, "high": 32}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: space.model.net.init_args.hiden_size: model.net: "
                                          r"Option 'hiden_size' is not accepted \(did you mean 'hidden_size'\?\)"):  # fmt: skip
        main(["--config", _sweep(in_tmp, space=space), *RUN])
    assert not (in_tmp / "sweep").exists()
    # trial 27: an optimizer's option misspelt was jsonargparse's callable-type dump; optimizer.lr had no pointer
    for key, said in [
        (
            "model.optimizer.init_args.lrr",
            r"model.optimizer: torch.optim.AdamW takes no option 'lrr' \(did you mean "
            r"'lr'\?\)$",
        ),  # fmt: skip
        (
            "optimizer.lr",
            r"Option 'optimizer.lr' is not accepted \(the optimizer and its schedule are the task's: "
            r"model.optimizer.init_args.lr\)$",
        ),  # fmt: skip
    ]:
        space = {key: {"type": "log_uniform", "low": 1e-4, "high": 1e-2}}
        with pytest.raises(ConfigError, match=rf"sweep.yaml:\d+: space.{key}: {said}"):
            main(["--config", _sweep(in_tmp, space=space), *RUN])
        assert not (in_tmp / "sweep").exists()
    # a command-line option misspelt: said as the command line's, not as the space key that happened to be parsed
    with pytest.raises(ConfigError, match=r"^sweep: unrecognized arguments: --trainer.max_epoch 1 \(did you mean "
                       r"'max_epochs'\?\) \(--trainer.max_epoch was given on the command line, to every trial\)$"):  # fmt: skip
        main(["--config", _sweep(in_tmp), *RUN, "--trainer.max_epoch", "1"])
    assert not (in_tmp / "sweep").exists()
    # an out that is a file: its line in the sweep file, before a trial runs
    (in_tmp / "taken").write_text("")
    with pytest.raises(
        ConfigError, match=r"sweep.yaml:\d+: out: .*taken is a file, not a folder for the sweep's files$"
    ):
        main(["--config", _sweep(in_tmp, out=str(in_tmp / "taken")), *RUN])
    # a storage or an out where nothing can be written: its line, before anything is written (trial 20: a
    # traceback, and settings.json left behind); /proc refuses root too
    if Path("/proc/self").is_dir():
        with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: storage: /proc/none/study.journal: nothing can be "
                                              r"written in /proc"):  # fmt: skip
            main(["--config", _sweep(in_tmp, storage="/proc/none/study.journal"), *RUN])
        with pytest.raises(
            ConfigError, match=r"sweep.yaml:\d+: out: /proc/none/out: nothing can be written in /proc"
        ):
            main(["--config", _sweep(in_tmp, out="/proc/none/out"), *RUN])
        assert not (in_tmp / "sweep").exists()
    # trial 27: a database URL missing its '://' ran the sweep into a journal file ./sqlite/nope.db; a driver not
    # installed, and a database that could not open, were tracebacks after settings.json was written
    for storage, said in [
        (
            "sqlite//nope.db",
            r"'sqlite//nope.db' reads as a journal file's path, not a database URL: a database is a "
            r"URL with '://'",
        ),  # fmt: skip
        ("study.db", r"'study.db' reads as a journal file's path, not a database URL"),
        (
            "postgresql://u:p@localhost:1/db",
            r"'postgresql://u:p@localhost:1/db': the driver for postgresql is not "
            r"installed",
        ),  # fmt: skip
        (
            "sqlite:////proc/none/x.db",
            r"'sqlite:////proc/none/x.db': /proc/none/x.db: nothing can be written in "
            r"/proc",
        ),  # fmt: skip
    ]:
        if "postgresql" in storage and importlib.util.find_spec("psycopg2") is not None:
            continue  # a driver installed: it would try to connect
        with pytest.raises(ConfigError, match=rf"sweep.yaml:\d+: storage: {said}"):
            main(["--config", _sweep(in_tmp, storage=storage), *RUN])
        assert not (in_tmp / "sweep").exists() and not (in_tmp / "sqlite").exists()
    with pytest.raises(ConfigError, match=r"^sweep: --worker -1 is not a worker number"):
        main(["--config", _sweep(in_tmp), "--worker", "-1", *RUN])
    # a good SQLite URL with a mistake found later: no database file made (review: RDBStorage made it first)
    space = {"model.net.init_args.hiden_size": {"type": "int", "low": 8, "high": 32}}
    with pytest.raises(ConfigError, match=r"space.model.net.init_args.hiden_size"):
        main(
            ["--config", _sweep(in_tmp, space=space, storage=f"sqlite:///{in_tmp / 'db' / 'study.db'}"), *RUN]
        )
    assert not (in_tmp / "db").exists() and not (in_tmp / "sweep").exists()
    # a folder named like a database is a journal's folder: only a scheme with ':' or '//' reads as a URL
    assert Sweep.load(_sweep(in_tmp, storage="sqlite/study.journal")).check_storage() is None


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
    # in W&B a pruned trial is a run that ended as asked (status 0, not a crash), marked pruned
    runs = [read_run(r) for r in find_runs(in_tmp / "sweep")]
    assert [(r["exit_code"], r["summary"].get("pruned")) for r in runs] == [(0, True), (0, True)]


def test_a_sweep_whose_runs_never_validate_stops_and_keeps_no_run(in_tmp, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(
        ConfigError, match=r"sweep: the runs never log 'val/pearson' at validation \(metric:\)"
    ):
        main(["--config", _sweep(in_tmp, trials=1), *RUN, "--trainer.limit_val_batches=0"])
    assert not find_runs(in_tmp / "sweep") and not (in_tmp / "sweep" / "trial-0").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"sweep.yaml: holds no settings \(it is empty, or comments alone\); it needs configs:, space:, metric:$"),
        ("# to do\n", r"sweep.yaml: holds no settings"),
        ("- a\n- b\n", r"sweep.yaml: expected a mapping of options \(configs:, space:, metric:, ...\), found \['a', 'b'\]"),
        ("name: x\nconfigs: [nope.yaml]\nmetric: val/loss\nspace: {lr: {type: uniform, low: 0, high: 1}}\n",
         r"sweep.yaml:2: configs\[0\]: file '.*nope.yaml' not found"),
    ],
)  # fmt: skip
def test_a_sweep_file_that_is_empty_not_a_mapping_or_names_a_missing_config_says_so(in_tmp, text, message):
    (in_tmp / "sweep.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Sweep.load(in_tmp / "sweep.yaml")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "log_uniform", "low": 0, "high": 1}, "lr: log_uniform needs low > 0, got 0"),
        ({"type": "int", "low": 0, "high": 3, "log": True}, "lr: int with log: true needs low >= 1, got 0"),
        ({"type": "choice", "values": []}, r"lr.values: \[\] is not a non-empty list"),
        ({"type": "uniform", "low": 0.5, "high": 0.5}, "lr: low 0.5 is not below high 0.5"),
        (
            {"type": "normal", "low": 0, "high": 1},
            "lr.type: 'normal' is not one of log_uniform, uniform, int, choice",
        ),
        ({"type": "uniform", "low": 0, "high": 1, "log": True}, "lr: uniform takes low, high, not log"),
        ({"type": "int", "low": 0.5, "high": 3}, r"lr.low: 0.5 is not a whole number"),
        ({"type": "uniform", "low": "a", "high": 1}, r"lr.low: 'a' is not a finite number"),
    ],
)
def test_a_bad_search_space_is_named_when_the_file_is_read(in_tmp, spec, message):
    bad = _sweep(in_tmp, space={"model.optimizer.init_args.lr": spec})
    with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: space.model.optimizer.init_args." + message):
        Sweep.load(bad)


def test_an_int_range_written_with_decimals_is_its_whole_numbers(in_tmp):
    """``low: 16.0`` is the whole number 16 (trial 20: refused as "not a whole number")."""
    space = {"model.net.init_args.hidden_size": {"type": "int", "low": 16.0, "high": 64.0}}
    sweep = Sweep.load(_sweep(in_tmp, space=space))
    assert sweep.space["model.net.init_args.hidden_size"] | {} == {"type": "int", "low": 16, "high": 64}
    assert isinstance(sweep.space["model.net.init_args.hidden_size"]["low"], int)


def test_a_metric_the_runs_do_not_log_stops_the_sweep_before_a_step_trains(in_tmp, monkeypatch, capfd):
    """A misspelt metric is refused at the first trial's sanity-check validation, naming what the runs log, in
    one line (no traceback from Optuna's log of the failed trial)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = _sweep(in_tmp, metric="val/los", trials=2)
    with pytest.raises(
        ConfigError,
        match=r"sweep.yaml:\d+: metric: 'val/los' is not logged at validation \(the runs log val/loss, val/mse, "
        r"val/pearson, val/r2, val/spearman\)",
    ):
        main(["--config", config, *RUN])
    # nothing written (trial 27: settings.json, the journal and trials.json with a failed trial were left); a
    # re-run after the mend starts afresh
    assert not (in_tmp / "sweep").exists()
    assert "Traceback" not in capfd.readouterr().err


def test_every_choice_and_range_end_is_checked_before_a_trial_runs(in_tmp):
    """A value of the space its option refuses is named with its line when the file is read, whichever value
    it is: drawn by a later trial it would stop the sweep midway."""
    space = {"model.net.init_args.hidden_size": {"type": "int", "low": 8, "high": 32},
             "model.net.init_args.cell": {"type": "choice", "values": ["gru", "lstm", "lstmm"]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: space.model.net.init_args.cell: .*lstmm"):
        main(["--config", _sweep(in_tmp, space=space), *RUN])
    space = {"model.net.init_args.hidden_size": {"type": "uniform", "low": 8, "high": 32.5}}  # an int option
    with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: space.model.net.init_args.hidden_size: .*32.5"):
        main(["--config", _sweep(in_tmp, space=space), *RUN])
    # a value only the net's constructor refuses: built before any trial (trial 20: trials 0 and 1 ran, then the
    # sweep stopped at trial 2's draw without naming the sweep file)
    space = {"model.net.init_args.dropout": {"type": "choice", "values": [0.1, 2.5]}}
    with pytest.raises(ConfigError, match=r"^\S*sweep.yaml:\d+: space.model.net.init_args.dropout: .*2.5"):
        main(["--config", _sweep(in_tmp, space=space), *RUN])
    assert not (in_tmp / "sweep").exists()


def test_an_interrupted_sweep_keeps_its_finished_trials_and_closes_the_running_one(in_tmp, monkeypatch):
    """Ctrl-C in the second trial: trials.json holds the first (complete) and the second as failed, not running
    for ever; the same command again runs the trial the budget still lacks."""
    from experiments import sweep

    monkeypatch.setenv("WANDB_MODE", "offline")
    seen = sweep.BestValue.on_validation_end

    def interrupt_second_trial(self, trainer, pl_module):
        if str(trainer.default_root_dir).endswith("trial-1"):
            raise KeyboardInterrupt
        seen(self, trainer, pl_module)

    monkeypatch.setattr(sweep.BestValue, "on_validation_end", interrupt_second_trial)
    once = [*TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]
    try:
        with pytest.raises(SystemExit):  # as Lightning ends a fit that Ctrl-C interrupted
            main(["--config", _sweep(in_tmp, trials=2), *once])
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # which Lightning's handler set aside
    trials = json.loads((in_tmp / "sweep" / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL"] and trials[0]["value"] is not None
    assert (in_tmp / "sweep" / "best.yaml").is_file()
    monkeypatch.setattr(sweep.BestValue, "on_validation_end", seen)
    main(["--config", _sweep(in_tmp, trials=2), *once])
    trials = json.loads((in_tmp / "sweep" / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def _tuned_comparison(folder, trials=2) -> str:
    spec = {"name": "tuned", "seeds": 1, "out": str(folder / "cmp"), "metric": "test/pearson",
            "models": {"CNN": str(ROOT / "experiments" / "dna" / "cnn.yaml"), "LSTM": LSTM},
            "tune": {"trials": trials, "pruner": "none",
                     "space": {"model.optimizer.init_args.lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-1}}}}  # fmt: skip
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.slow  # 27 s (make test-all); tuning a row (all trials failed, then mended) and the sweep stay default
def test_compare_tunes_every_row_with_the_same_budget_then_runs_its_seeds_with_the_best(in_tmp, monkeypatch):
    """Each row gets its own study of the same number of trials on the validation metric; every seed of the row
    then trains with that row's best rate; results.json and results.md say so; a re-run adds no trial."""
    from experiments.compare import main as compare

    monkeypatch.setenv("WANDB_MODE", "offline")
    config = _tuned_comparison(in_tmp)
    compare(["--config", config, *RUN, "--trainer.max_epochs=1"])
    report = json.loads((in_tmp / "cmp" / "results.json").read_text())
    assert set(report["tuning"]) == {"CNN", "LSTM"}
    for model, tuned in report["tuning"].items():
        trials = json.loads((in_tmp / "cmp" / "tune" / model / "trials.json").read_text())
        assert trials["metric"] == "val/pearson" and trials["direction"] == "maximize"  # from test/pearson
        assert len(trials["trials"]) == 2 == tuned["trials"]
        values = [t["value"] for t in trials["trials"]]
        assert tuned["value"] == max(values)
        lr = tuned["params"]["model.optimizer.init_args.lr"]
        saved = yaml.safe_load((in_tmp / "cmp" / "runs" / f"{model}-seed0" / "run_config.yaml").read_text())
        assert saved["model"]["init_args"]["optimizer"]["init_args"]["lr"] == lr  # the row ran with its best
    assert (
        "Each row tuned first with the same budget (2 trials on val/pearson)"
        in (in_tmp / "cmp" / "results.md").read_text()
    )
    # the W&B summary run holds each row's best trial too (trial 20: only the settings of the comparison)
    (summary,) = [
        read_run(p) for p in find_runs(in_tmp / "cmp") if read_run(p)["run"]["name"] == "tuned-summary"
    ]
    assert summary["config"]["tuning"] == report["tuning"]

    before = (in_tmp / "cmp" / "tune" / "CNN" / "trials.json").read_text()
    compare(["--config", config, *RUN, "--trainer.max_epochs=1"])  # everything done: kept
    assert (in_tmp / "cmp" / "tune" / "CNN" / "trials.json").read_text() == before
    with pytest.raises(ConfigError, match=r"tune/CNN: row 'CNN' was run with other settings"):
        compare(["--config", config, *RUN, "--trainer.max_epochs=2"])  # the study's trials ran 1 epoch


def test_compare_tuning_section_is_checked(in_tmp):
    from experiments.compare import Comparison

    _tuned_comparison(in_tmp)
    spec = yaml.safe_load((in_tmp / "compare.yaml").read_text())
    spec["tune"]["metric"] = "test/pearson"
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(
        ConfigError, match=r"bad.yaml:\d+: tune.metric: 'test/pearson' is not a validation metric"
    ):
        Comparison.load(in_tmp / "bad.yaml")
    spec["tune"] = {"trials": 2, "space": {"model.optimizer.init_args.lr": {"type": "loguniform"}}}
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(
        ConfigError, match=r"bad.yaml:\d+: tune.space.model.optimizer.init_args.lr.type: 'loguniform'"
    ):
        Comparison.load(in_tmp / "bad.yaml")
    spec["tune"] = {"trails": 2, "space": {}}
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(
        ConfigError, match=r"bad.yaml:\d+: tune.trails: not an option \(did you mean 'trials'\?\)$"
    ):
        Comparison.load(in_tmp / "bad.yaml")
    spec["tune"] = {"trials": 2}
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: tune: needs space \(the options to tune\)$"):
        Comparison.load(in_tmp / "bad.yaml")
    # a key the second row does not take (the LSTM's hidden_size, not the CNN's): named with that row before
    # any row tunes (trial 20: the first row's trials ran, then the error named no row)
    from experiments.compare import main as compare

    spec["tune"] = {
        "trials": 2,
        "space": {"model.net.init_args.hidden_size": {"type": "int", "low": 8, "high": 16}},
    }
    spec["models"] = {"LSTM": LSTM, "CNN": str(ROOT / "experiments" / "dna" / "cnn.yaml")}
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))  # the LSTM first
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: tune.space.model.net.init_args.hidden_size: .*"
                                          r"'hidden_size' is not accepted.*\(row 'CNN', .*cnn.yaml\)$"):  # fmt: skip
        compare(["--config", str(in_tmp / "bad.yaml"), *RUN])
    assert not (in_tmp / "cmp" / "tune").exists()


def test_a_row_whose_trials_all_failed_is_tuned_again_with_corrected_settings(in_tmp):
    """A row whose every trial failed (a misspelt metric) starts its study again with the corrected settings; one
    with a trial that counts refuses other settings."""
    import optuna

    from experiments.compare import Comparison
    from experiments.sweep import check_settings
    from experiments.tuning import row_sweep, tuning_of

    comparison = Comparison.load(_tuned_comparison(in_tmp))
    sweep = row_sweep(comparison, "CNN", tuning_of(comparison))
    check_settings(sweep, [], "row 'CNN'", "give another --out")
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage_url())
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    sweep.metric, sweep.direction = "val/loss", "minimize"
    check_settings(sweep, [], "row 'CNN'", "give another --out")
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage_url(), direction="minimize")
    assert study.trials == []  # begun again, in the new direction
    study.tell(study.ask(), 0.5)
    sweep.metric = "val/mse"
    with pytest.raises(ConfigError, match=r"tune/CNN: row 'CNN' was run with other settings \(metric;"):
        check_settings(sweep, [], "row 'CNN'", "give another --out")
    sweep.metric, sweep.space = (
        "val/loss",
        {k: dict(reversed(v.items())) for k, v in sweep.space.items()},
    )  # reordered
    check_settings(sweep, [], "row 'CNN'", "give another --out")


def test_a_rows_failed_trials_are_not_counted_in_its_budget_and_results_md_says_so(in_tmp):
    """Trial 27: a row whose trial was interrupted (failed, then run again) was recorded with 4 trials beside the
    other row's 3, under 'the same budget (3 trials ...)'."""
    import optuna

    from experiments.compare import Comparison
    from experiments.report import markdown_table
    from experiments.report import summarize as table_of
    from experiments.sweep import check_settings
    from experiments.tuning import row_sweep, tune_row, tuning_of

    comparison = Comparison.load(_tuned_comparison(in_tmp, trials=2))
    sweep = row_sweep(comparison, "CNN", tuning_of(comparison))
    overrides = [
        f"--seed_everything={tuning_of(comparison).seed}",
        "--trainer.devices=1",
    ]  # as tune_row's trials
    check_settings(sweep, overrides, "row 'CNN'", "give another --out")
    params = {"model.optimizer.init_args.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage_url(), direction="maximize")
    study.tell(study.ask(params), 0.4)
    study.tell(study.ask(params), state=optuna.trial.TrialState.FAIL)  # interrupted: run again
    study.tell(study.ask(params), 0.6)
    best = tune_row(comparison, "CNN", [])  # the budget is full: no trial runs, the row's record is read back
    assert (best["trials"], best["trials_failed"], best["value"]) == (2, 1, 0.6)
    row = {
        "metric": "val/pearson",
        "best_trial": 2,
        "value": 0.6,
        "params": {"model.optimizer.init_args.lr": 0.01},
    }
    runs = [{"model": m, "seed": 0, "params": 10, "test": {"test/pearson": 0.5}, "train_seconds": 1.0,
             "peak_memory_mb": 100.0} for m in ("CNN", "LSTM")]  # fmt: skip
    report = table_of(runs, "test/pearson")
    same = markdown_table({**report, "tuning": {"CNN": {**row, "trials": 2, "trials_failed": 1},
                                                "LSTM": {**row, "trials": 2}}})  # fmt: skip
    assert "Each row tuned first with the same budget (2 trials on val/pearson); failed trials, run again and not " \
           "counted: CNN 1; its best settings" in same  # fmt: skip
    other = markdown_table({**report, "tuning": {"CNN": {**row, "trials": 2}, "LSTM": {**row, "trials": 3}}})
    assert "Each row tuned first on val/pearson, with other budgets: CNN 2, LSTM 3 trials; its best" in other


@pytest.mark.slow  # 36 s of worker processes (make test-all); tuning and the local launcher each stay in the default suite
def test_local_launcher_tunes_the_rows_in_parallel_workers_then_runs_their_seeds(in_tmp, monkeypatch):
    """With ``--launcher local`` each row's tuning is one job of the worker pool (real processes), and the
    seeds then run with each row's best settings, as with the sequential launcher."""
    from experiments.compare import main as compare

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    config = _tuned_comparison(in_tmp, trials=1)
    compare(["--config", config, "--launcher", "local", "--devices", "0,1", *RUN, "--trainer.max_epochs=1"])
    report = json.loads((in_tmp / "cmp" / "results.json").read_text())
    assert {r["model"] for r in report["runs"]} == {"CNN", "LSTM"} and set(report["tuning"]) == {
        "CNN",
        "LSTM",
    }
    for model, tuned in report["tuning"].items():
        folder = in_tmp / "cmp" / "tune" / model
        assert "=== tuning" in (folder / "launcher.log").read_text()  # the trials ran in a worker
        assert [t["state"] for t in json.loads((folder / "trials.json").read_text())["trials"]] == [
            "COMPLETE"
        ]
        saved = yaml.safe_load((in_tmp / "cmp" / "runs" / f"{model}-seed0" / "run_config.yaml").read_text())
        assert (
            saved["model"]["init_args"]["optimizer"]["init_args"]["lr"]
            == tuned["params"]["model.optimizer.init_args.lr"]
        )
    assert len(list((in_tmp / "cmp").glob("worker-*.log"))) == 2
    # again: every row's tuning and every run are done, so no worker starts (trial 27: a tuning job per row did)
    import experiments.compare

    started = []  # the jobs given to the worker pool (none given: it is not called)
    monkeypatch.setattr(
        experiments.compare, "launch_local", lambda argv, jobs, *rest: started.append(jobs) or []
    )
    compare(["--config", config, "--launcher", "local", "--devices", "0,1", *RUN, "--trainer.max_epochs=1"])
    assert started == []


def test_two_commands_on_one_storage_share_the_studys_trial_budget():
    """The budget counts every trial of the study that counts, whichever command ran it: a worker stops once the
    study holds them (trial 20: two sweep commands started at once on one storage ran the budget each). A trial
    left running by a kill before this command started is not counted (it is run again). Real Optuna studies."""
    import datetime

    import optuna

    from experiments.sweep import StudyBudget

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    for value in (1.0, 2.0):  # another command's, finished
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    stale = study.ask()  # killed long ago: RUNNING for good
    since = datetime.datetime.now()
    assert stale.datetime_start < since
    study.optimize(lambda t: 0.0, n_trials=5, callbacks=[StudyBudget(4, since)])
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4  # two more, not five
    running_now = study.ask()  # a concurrent command's trial, started since: counted
    study.optimize(lambda t: 0.0, n_trials=5, callbacks=[StudyBudget(6, since)])
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.COMPLETE) == 5 and running_now.number
