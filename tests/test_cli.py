import csv
import json
from pathlib import Path

import pytest
from conftest import ROOT, TINY_DATA, run_main, run_module
from wandb_offline import find_runs, read_run

from archbench.errors import ConfigError
from experiments.cli import ExperimentCLI
from experiments.compare import main as compare
from lit_models.checks import UnusedParametersError

DNA = ROOT / "experiments" / "dna"
NO_LOGGER = [
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.init_args.save_dir=logs",
    "--trainer.enable_progress_bar=false",
]  # CSV only: no W&B run per test


def test_the_bases_apply_with_and_without_subcommand_and_the_given_files_win(in_tmp):
    """experiments/base.yaml, then experiments/dna/base.yaml, are loaded both for `fit` and for the runs compare
    builds (run=False, no subcommand); a file given after them wins over both."""
    import yaml

    dna = yaml.safe_load((DNA / "base.yaml").read_text())
    (in_tmp / "mine.yaml").write_text(
        "trainer: {max_epochs: 7}\nmodel: {optimizer: {init_args: {lr: 0.5}}}\n"
    )
    for cli in (
        ExperimentCLI(args=["--config", str(DNA / "rnn.yaml"), *TINY_DATA, *NO_LOGGER], run=False),
        ExperimentCLI(args=["fit", "--config", str(DNA / "rnn.yaml"), *TINY_DATA, *NO_LOGGER, "--trainer.fast_dev_run=1"]),
    ):  # fmt: skip
        assert cli.trainer.max_epochs == dna["trainer"]["max_epochs"] or cli.trainer.fast_dev_run
        assert cli.model.optimizer.keywords["lr"] == 0.003  # experiments/base.yaml
        assert cli.trainer.checkpoint_callback.monitor == "val/loss"
        assert type(cli.datamodule).__name__ == "DNADataModule"  # experiments/dna/base.yaml
    mine = ["--config", "mine.yaml", "--config", str(DNA / "rnn.yaml"), *TINY_DATA, *NO_LOGGER]
    cli = ExperimentCLI(args=mine, run=False)  # mine.yaml comes first, yet the bases do not override it
    assert cli.trainer.max_epochs == 7 and cli.model.optimizer.keywords["lr"] == 0.5


def test_a_yaml_syntax_error_names_the_file_and_line(in_tmp):
    (in_tmp / "broken.yaml").write_text(
        "model:\n  net:\n    class_path: lit_models.DilatedCNN\n    init_args: {channels: [}\n"
    )
    result = run_main("fit", "--config", str(DNA / "cnn.yaml"), "--config", "broken.yaml", cwd=in_tmp)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: broken.yaml:4:")


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "transformer", "cnn"])
def test_fast_dev_run(name, in_tmp):
    ExperimentCLI(args=["fit", "--config", str(DNA / f"{name}.yaml"), "--trainer.fast_dev_run=2", *TINY_DATA])


def test_print_config_shows_the_model_without_linked_sizes(in_tmp):
    result = run_main("fit", "--config", str(DNA / "lstm.yaml"), "--print_config", cwd=in_tmp)
    assert result.returncode == 0, result.stderr
    assert "class_path: lit_models.RecurrentNet" in result.stdout
    assert "cell: lstm" in result.stdout
    assert "in_channels" not in result.stdout  # linked from the data, never typed


@pytest.mark.parametrize(
    "content, expected",
    [
        ("ACGT 1.0\nACGU 2.0\n", "bad.txt:2: sequence base 4 is 'U'"),
        ("ACGT 1.0\nACGT\n", "bad.txt:2: expected 'SEQUENCE LABEL'"),
        ("", "bad.txt: file is empty"),
    ],
)
def test_bad_data_is_one_clear_line_and_nothing_is_written(in_tmp, content, expected):
    (in_tmp / "bad.txt").write_text(content)
    result = run_main("fit", "--config", str(DNA / "cnn.yaml"), "--data.train_path=bad.txt", cwd=in_tmp)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in in_tmp.iterdir()) == ["bad.txt"]  # no logs, checkpoints or W&B runs


def test_missing_file_in_compare(in_tmp):
    result = run_main(
        "compare", "--config", str(DNA / "compare.yaml"), "--data.train_path=nope.txt", cwd=in_tmp
    )
    assert result.returncode == 2
    said = (  # the first row's run; the folder a relative path was looked for in
        f"error: {DNA / 'compare.yaml'}: models.RNN (rnn.yaml): data.train_path: file 'nope.txt' not found "
        f"(relative to the working folder {in_tmp})"
    )
    assert said in result.stderr and "Traceback" not in result.stderr
    assert list(in_tmp.iterdir()) == []


def test_unused_parameters_stop_the_run_with_their_names(in_tmp):
    args = [
        "fit",
        "--config",
        str(DNA / "cnn.yaml"),
        "--model.net=course_models.CourseTransformer",
        "--data.simulation.n_train=32",
        "--data.simulation.n_val=8",
        "--data.simulation.n_test=8",
        "--data.simulation.seq_len=40",
        *NO_LOGGER,
        "--trainer.max_epochs=1",
    ]
    with pytest.raises(
        UnusedParametersError,
        match=r"24 of 26 trainable parameter tensors get no gradient from the loss: net\.encoder\.layers\.0\.",
    ):
        ExperimentCLI(args=args)
    result = run_main(*args, cwd=in_tmp)
    assert result.returncode == 2 and "error: " in result.stderr and "Traceback" not in result.stderr
    with pytest.warns(UserWarning, match="get no gradient"):
        ExperimentCLI(
            args=[
                *args,
                "--model.unused_parameters=warn",
                "--trainer.limit_train_batches=1",
                "--trainer.limit_val_batches=1",
                "--trainer.num_sanity_val_steps=0",
            ]
        )


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_tells_its_own_options_from_the_runs_options():
    from experiments.configs import split_options

    argv = ["--config", "c.yaml", "--models", "CNN,GRU", "--model.optimizer.lr", "0.1", "--seeds=2",
            "--trainer.max_epochs=3", "--data", "datamodules.dna.DNADataModule", "--seed_everything", "4"]  # fmt: skip
    own, runs = split_options(argv)
    assert own == ["--config", "c.yaml", "--models", "CNN,GRU", "--seeds=2"]
    assert runs == ["--model.optimizer.lr", "0.1", "--trainer.max_epochs=3", "--data",
                    "datamodules.dna.DNADataModule", "--seed_everything", "4"]  # fmt: skip


def test_compare_help_lists_the_comparison_files_keys_as_they_are_written_with_defaults():
    from dataclasses import fields

    from experiments.compare import Comparison, command_parser

    text = command_parser().format_help()
    own, keys = text.split("A comparison file is YAML with these keys")
    assert own.count("-h, --help") == 1 and "-h, --help" not in keys  # the command's own flag, once
    listed = [line.split(":")[0].strip() for line in keys.splitlines()[1:] if line.startswith("  ") and
              not line.startswith("      ")]  # fmt: skip
    assert listed == [f.name for f in fields(Comparison) if f.name not in ("path", "bases")]
    assert "--" not in keys.replace("--launcher", "")  # keys as written in the file, not flags
    assert "  models: Row name -> the model's config file" in keys and "(required)" in keys
    assert "  seeds: Seeds per model" in keys and "(3)" in keys and "  launcher: " in keys
    assert "  tune: Tune every row with the same trial budget" in keys  # it had no description


def test_compare_rows_stop_when_validation_stops_improving_and_the_table_shows_their_epochs(in_tmp):
    # The same rule for every row: early stopping on val/loss (patience 4 validations, base.yaml) within the
    # bound. A row that cannot improve (learning rate 0) stops at its 5th validation: 2.5 epochs of 4 batches.
    frozen = (DNA / "cnn.yaml").read_text() + "  optimizer:\n    init_args: {lr: 0.0}\n"
    (in_tmp / "frozen.yaml").write_text(frozen)
    (in_tmp / "cmp.yaml").write_text(
        f"name: es\nseeds: 1\nout: out\nconfig: {DNA / 'base.yaml'}\nmodels:\n  Frozen: frozen.yaml\n"
    )
    compare(
        ["--config", "cmp.yaml", *TINY_DATA, "--trainer.max_epochs=6", "--trainer.enable_progress_bar=false"]
    )
    (run,) = json.loads((in_tmp / "out" / "results.json").read_text())["runs"]
    assert run["steps"] == 10 and run["epochs"] == 2.5
    # the plot's curve: a validation every 2 steps, at the steps done (Lightning's metrics.csv says one less)
    from experiments.report import _val_curve

    assert [step for step, _ in _val_curve(run["metrics_csv"], "val/loss")] == [2, 4, 6, 8, 10]
    table = (in_tmp / "out" / "results.md").read_text()
    assert "| Epochs |" in table and "| 2.5 |" in table
    assert run["peak_memory_of"] == "process" and "memory an earlier row freed but the process kept" in table


def test_compare_writes_results_and_offline_wandb_runs(in_tmp):
    (in_tmp / "cmp.yaml").write_text(
        f"name: tiny\nseeds: 3\nout: out\nthroughput_window: 2\nmodels:\n  GRU: {DNA / 'gru.yaml'}\n  CNN: {DNA / 'cnn.yaml'}\n"
    )
    compare(
        [
            "--config",
            "cmp.yaml",
            "--seeds",
            "2",
            *TINY_DATA,
            "--trainer.max_epochs=2",
            "--trainer.log_every_n_steps=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    out = in_tmp / "out"
    report = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in report["runs"]] == [
        ("GRU", 0),
        ("GRU", 1),
        ("CNN", 0),
        ("CNN", 1),
    ]
    for run in report["runs"]:
        assert {"model", "seed", "params", "test", "train_seconds", "throughput", "peak_memory_mb", "epochs",
                "steps", "config"} <= set(run)  # fmt: skip
        assert run["epochs"] == 2 and run["steps"] == 8 and run["config"]["seed_everything"] == run["seed"]
        assert set(run["test"]) == {"test/pearson", "test/spearman", "test/r2", "test/mse"}
        assert (
            run["params"] > 0
            and run["train_seconds"] > 0
            and run["throughput"] > 0
            and run["peak_memory_mb"] > 0
        )
    gru = [r for r in report["runs"] if r["model"] == "GRU"]
    assert gru[0]["test"] != gru[1]["test"]  # the seeds really differ
    summary = {row["model"]: row for row in report["summary"]}
    values = [r["test"]["test/pearson"] for r in gru]
    assert summary["GRU"]["test/pearson_mean"] == pytest.approx(sum(values) / 2)
    assert summary["GRU"]["test/pearson_std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert 0 < report["noise_ceiling"] < 1
    made = report["provenance"]
    assert made["command"][:3] == ["archbench", "compare", "--config"] and made["settings"]["seeds"] == 2
    assert len(made["git_commit"]) == 40 and isinstance(made["git_dirty"], bool)
    assert {"python", "torch", "lightning", "timm", "datasets", "transformers"} <= set(made["versions"])
    assert made["devices"]["cpu_count"] >= 1 and made["started"] <= made["finished"]
    table = (out / "results.md").read_text()
    assert "| GRU |" in table and "| CNN |" in table and "Noise ceiling" in table
    assert (out / "comparison.png").stat().st_size > 10_000

    runs = {read_run(p)["run"]["name"]: read_run(p) for p in find_runs(out)}
    assert set(runs) == {"GRU-seed0", "GRU-seed1", "CNN-seed0", "CNN-seed1", "tiny-summary"}
    for name, logged in runs.items():
        assert logged["run"]["group"] == "tiny"
        if name == "tiny-summary":
            assert any("comparison/_type" in h for h in logged["history"])  # the W&B Table
            continue
        model, seed = name.split("-seed")
        assert logged["run"]["tags"] == [model, f"seed{seed}"]
        assert logged["config"]["params"] == summary[model]["params"]
        assert logged["config"]["config"]["model"]["init_args"]["net"]["class_path"].startswith("lit_models.")
        run = next(r for r in report["runs"] if r["model"] == model and r["seed"] == int(seed))
        assert logged["summary"]["test/pearson"] == pytest.approx(run["test"]["test/pearson"])
        # Every validation Pearson in the CSV log is in the W&B history, value for value.
        csv_values = [float(r["val/pearson"]) for r in _read_csv(run["metrics_csv"]) if r.get("val/pearson")]
        wandb_values = [h["val/pearson"] for h in logged["history"] if "val/pearson" in h]
        assert len(csv_values) >= 2 and wandb_values == pytest.approx(csv_values)  # at least once per epoch

    # --models picks the rows to run; the table keeps the file's other finished rows, in the file's order
    again = ["--config", "cmp.yaml", "--seeds", "2", *TINY_DATA, "--trainer.max_epochs=2",
             "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
    compare([*again, "--models", "CNN"])
    rerun = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"], r["test"]) for r in rerun["runs"]] == [
        (r["model"], r["seed"], r["test"]) for r in report["runs"]
    ]
    settings = rerun["provenance"]["settings"]  # the file's rows, as the table holds them; and what ran now
    assert list(settings["models"]) == ["GRU", "CNN"] and settings["models_run"] == ["CNN"]
    assert "models_run" not in made["settings"]
    # each run says when and at which commit it was made: the kept ones are the earlier command's
    assert all(made["started"] <= r["finished"] <= made["finished"] for r in report["runs"])
    assert [r["finished"] for r in rerun["runs"] if r["model"] == "GRU"] == [
        r["finished"] for r in report["runs"] if r["model"] == "GRU"
    ]
    assert all(r["git_commit"] == made["git_commit"] for r in rerun["runs"])
    with pytest.raises(ConfigError, match=r"--models: ',' names no model; cmp.yaml has GRU, CNN$"):
        compare([*again, "--models", ","])  # it ran nothing and rewrote the table (and "" ran every row)
    with pytest.raises(ConfigError, match=r"--models: 'cnn' is not in .*cmp.yaml \(did you mean CNN\?\)"):
        compare([*again, "--models", "cnn"])  # trial 34: no close name given
    assert json.loads((out / "results.json").read_text()) == rerun
    # one summary run for the folder: the re-run logged its table in it again, with its own provenance
    summaries = [read_run(p) for p in find_runs(out) if read_run(p)["run"]["name"] == "tiny-summary"]
    assert len(summaries) == 2 and len({r["run"]["id"] for r in summaries}) == 1
    assert [r["config"]["provenance"]["started"] for r in summaries] == [
        made["started"],
        rerun["provenance"]["started"],
    ]


def test_compare_out_under_home_given_quoted_is_one_folder(in_tmp, monkeypatch):
    """``--out=~/cmp`` (no shell expands it): the logs went to ~/cmp and the checkpoints and W&B to ./~/cmp, then a
    traceback (trial 12)."""
    monkeypatch.setenv("HOME", str(in_tmp / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    (in_tmp / "cmp.yaml").write_text(f"name: tiny\nseeds: 1\nmodels:\n  CNN: {DNA / 'cnn.yaml'}\n")
    compare(["--config", "cmp.yaml", "--out=~/cmp", *TINY_DATA, "--trainer.max_epochs=1",
             "--trainer.enable_progress_bar=false"])  # fmt: skip
    out = in_tmp / "home" / "cmp"
    assert (out / "results.json").is_file() and list((out / "runs").rglob("last.ckpt"))
    assert not (in_tmp / "~").exists()


def test_seed_parity_table_shows_the_course_counts(in_tmp):
    compare(
        [
            "--config",
            str(DNA / "seed_parity.yaml"),
            "--out",
            "out",
            *TINY_DATA,
            "--data.simulation.seq_len=250",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    report = json.loads((in_tmp / "out" / "results.json").read_text())
    assert {r["model"]: r["params"] for r in report["summary"]} == {
        "RNN": 198_913,
        "LSTM": 268_545,
        "Transformer": 112_193,
    }
    table = (in_tmp / "out" / "results.md").read_text()
    assert "198,913" in table and "268,545" in table and "112,193" in table


def test_predictions_tsv_quotes_what_would_split_a_row_and_reads_back_whole():
    """Tabs, line breaks (a lone carriage return too, which ``csv.writer`` with ``\\n`` line ends leaves bare) and
    double quotes in passed-through values: quoted, and read back as written by ``csv`` and pandas."""
    import io

    import pandas as pd

    from experiments.callbacks import _tsv

    rows = [["index", "id", "text"], [0, "a\rb", 'he said "hi"'], [1, "r\t3", None], [2, "plain", "x\ny"]]
    written = _tsv(rows)
    assert written.splitlines()[0] == "index\tid\ttext" and "\tplain\t" in written  # plain values as they are
    assert list(csv.reader(io.StringIO(written, newline=""), delimiter="\t")) == [
        [str(v) if v is not None else "" for v in row] for row in rows
    ]
    frame = pd.read_csv(io.StringIO(written), sep="\t", keep_default_na=False)
    assert frame["id"].tolist() == ["a\rb", "r\t3", "plain"] and frame["text"].tolist()[0] == 'he said "hi"'


def test_predict_writes_one_row_per_sequence_tied_to_its_record(in_tmp):
    """Each row says its record's line (a skipped bad record would shift the row index) and, for a table,
    the record's other columns (an id, the label), so predictions join back to the input."""
    (in_tmp / "new.txt").write_text("ACGTACGTAC\n\nGGGGCCCCAATT\nACGTXX\nACGTN\n")
    (in_tmp / "new.csv").write_text(
        "id,sequence,label\nr1,ACGTAC,0.5\n\nr2,ACXX,1\nr\t3,GGCC,\n"
    )  # a blank line
    (in_tmp / "bare.csv").write_text("sequence\nACGTAC\nACXX\nGGCC\n")  # sequences alone
    ExperimentCLI(
        args=["fit", "--config", str(DNA / "cnn.yaml"), *TINY_DATA, *NO_LOGGER, "--trainer.max_epochs=1"]
    )
    ckpt = next(in_tmp.rglob("last.ckpt"))
    written = {}
    for name in ("new.txt", "new.csv", "bare.csv"):
        ExperimentCLI(
            args=[
                "predict",
                "--config",
                str(DNA / "cnn.yaml"),
                *TINY_DATA,
                *NO_LOGGER,
                f"--data.predict_path={name}",
                "--data.on_bad_line=skip",
                f"--ckpt_path={ckpt}",
            ]
        )
        found = next(in_tmp.rglob("predictions.tsv"))  # in the run's log folder
        with open(found, newline="") as f:  # a value with a tab in it is quoted, as csv reads it back
            written[name] = list(csv.reader(f, delimiter="\t"))
        found.unlink()
    rows = written["new.txt"]
    assert rows[0] == ["index", "line", "prediction"] and len(rows) == 4
    assert [r[:2] for r in rows[1:]] == [["0", "1"], ["1", "3"], ["2", "5"]]
    rows = written["new.csv"]  # data rows, 1-based (pandas skips the blank line, as the reader does)
    assert rows[0] == ["index", "row", "id", "label", "prediction"]
    assert [r[:4] for r in rows[1:]] == [["0", "1", "r1", "0.5"], ["1", "3", "r\t3", ""]]
    assert all(float(r[-1]) == float(r[-1]) for r in rows[1:])  # a number, not NaN
    assert [r[:2] for r in written["bare.csv"]] == [["index", "row"], ["0", "1"], ["1", "3"]]


def test_predict_on_the_test_split_says_where_each_row_comes_from_and_its_label(in_tmp):
    """Without a predict_path, predict reads the test split: each row then carries the label it is scored
    against, and where it comes from: the training file's row (id and label columns beside it) for a split held
    out of it, in the split's seeded order; the record of an encoded folder; nothing more for simulated data."""
    import numpy as np

    from datamodules.dna_io import encode_file

    rng = np.random.default_rng(0)
    records = [
        (f"s{k}", "".join(rng.choice(list("ACGT"), 40)), round(float(rng.normal()), 3)) for k in range(80)
    ]
    lines = ["id,sequence,label", *(f"{i},{q},{y}" for i, q, y in records)]
    (in_tmp / "train.csv").write_text("\n".join(lines) + "\n")
    encode_file(in_tmp / "train.csv", in_tmp / "encoded")
    written = {}
    fit = [
        "--config",
        str(DNA / "cnn.yaml"),
        "--data.train_path=train.csv",
        *NO_LOGGER,
        "--data.batch_size=16",
    ]
    ExperimentCLI(args=["fit", *fit, "--trainer.max_epochs=1", "--trainer.default_root_dir=fit"])
    ckpt = next((in_tmp / "fit").rglob("last.ckpt"))  # a CNN reads sequences of any length: one model for all
    for name, data in (("table", ["--data.train_path=train.csv"]), ("folder", ["--data.train_path=encoded"]),
                       ("simulated", TINY_DATA)):  # fmt: skip
        args = ["--config", str(DNA / "cnn.yaml"), *data, *NO_LOGGER, "--data.batch_size=16"]
        ExperimentCLI(args=["predict", *args, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={name}"])
        found = next((in_tmp / name).rglob("predictions.tsv"))
        with open(found, newline="") as f:  # a value with a tab in it is quoted, as csv reads it back
            written[name] = list(csv.reader(f, delimiter="\t"))
    table, folder = written["table"], written["folder"]
    assert table[0] == ["index", "row", "id", "label", "prediction"]  # the file's own label column
    assert folder[0] == ["index", "record", "label", "prediction"]
    assert len(table) == len(folder) == 1 + 8  # the base's test_fraction 0.1 of 80
    for row, record in zip(table[1:], folder[1:], strict=True):
        k = int(row[1]) - 1  # the file's data row, 1-based
        assert row[2:4] == [records[k][0], str(records[k][2])]
        assert int(record[1]) == k + 1 and float(record[2]) == pytest.approx(records[k][2])  # the same split
    assert [int(r[1]) for r in table[1:]] != sorted(int(r[1]) for r in table[1:])  # the split's seeded order
    assert written["simulated"][0] == ["index", "label", "prediction"] and len(written["simulated"]) == 1 + 21


def test_one_seed_reports_no_spread():
    from experiments.report import markdown_table, summarize

    runs = [
        {
            "model": "CNN",
            "seed": 0,
            "params": 10,
            "test": {"test/pearson": 0.5},
            "train_seconds": 1.0,
            "throughput": 2.0,
            "peak_memory_mb": 3.0,
        }
    ]
    report = summarize(runs, "test/pearson")
    assert report["summary"][0]["test/pearson_std"] is None
    table = markdown_table(report)
    assert "| 0.500 |" in table and "±" not in table.split("\n\n")[0]
    assert "Throughput –" not in table
    unmeasured = markdown_table(summarize([{**runs[0], "throughput": None}], "test/pearson"))
    assert "| – |" in unmeasured and "Throughput –: the run trained fewer batches than" in unmeasured
    short = markdown_table(summarize([{**runs[0], "train_seconds": 0.34}], "test/pearson"))
    assert "| 0.34 |" in short  # a short run's time, not 0
    # the seeds' spread of time, as of the metrics; and where it is wide, said (trial 34: 7.8 s and 0.22 s as "4")
    uneven = markdown_table(summarize([{**runs[0], "train_seconds": 7.8}, {**runs[0], "seed": 1,
                                                                          "train_seconds": 0.22}], "test/pearson"))  # fmt: skip
    assert "| 4 ± 5.4 |" in uneven
    assert "Train time differs more than 2x between the seeds of CNN (0.22–7.8 s): one-time costs" in uneven
    even = markdown_table(summarize([runs[0], {**runs[0], "seed": 1, "train_seconds": 1.5}], "test/pearson"))
    assert "| 1.2 ± 0.35 |" in even and "Train time differs" not in even
    # which weights were tested: the best checkpoint, or the final weights where no validation ran
    assert "test metrics of the best-validation checkpoint." in table
    final = markdown_table(summarize([{**runs[0], "tested": "final"}], "test/pearson"))
    assert "test metrics of the final weights (no validation ran, so no best checkpoint)" in final
    mixed = markdown_table(summarize([runs[0], {**runs[0], "seed": 1, "tested": "final"}], "test/pearson"))
    assert "of the final weights for CNN (seed 1): no validation ran there" in mixed
    assert "Matched compute" not in table
    budget = {"budget_flops": 5e6}
    matched = markdown_table(summarize([{**runs[0], **budget, "budget_steps": 40}, {**runs[0], **budget, "seed": 1,
                                        "budget_steps": 42}, {**runs[0], **budget, "model": "RNN", "budget_steps": 90}],
                                       "test/pearson"))  # fmt: skip
    assert ("Matched compute: each run trained for the whole steps that fit in 5e+06 training FLOPs (compare's "
            "budget_flops, counted as above; its Train FLOPs are at most that), so the rows train for different "
            "steps: CNN 40–42, RNN 90.") in matched and "Stopped before their budget" not in matched  # fmt: skip
    short = markdown_table(summarize([{**runs[0], **budget, "budget_steps": 40, "steps": 40},
                                      {**runs[0], **budget, "model": "RNN", "budget_steps": 90, "steps": 32}],
                                     "test/pearson"))  # fmt: skip
    assert ("Stopped before their budget by the validation rule (early stopping), so trained on less compute than "
            "the others: RNN seed 0 (32 of 90 steps).") in short  # fmt: skip
    # a re-run keeps finished runs made by earlier code: the table says which commit made which
    assert "By commit" not in table
    commits = [{**runs[0], "git_commit": "a" * 40}, {**runs[0], "seed": 1, "git_commit": "b" * 40},
               {**runs[0], "model": "RNN", "git_commit": "a" * 40}]  # fmt: skip
    assert ("Runs made at 2 commits: a re-run keeps finished runs. By commit: aaaaaaa: CNN seed 0, RNN seed 0; "
            "bbbbbbb: CNN seed 1.") in markdown_table(summarize(commits, "test/pearson"))  # fmt: skip
    # every run kept from other code than the command's (or with uncommitted changes): said too
    report = {
        **summarize(commits[:1], "test/pearson"),
        "provenance": {"git_commit": "c" * 40, "git_dirty": False},
    }
    assert ("Not every run was made by this command's code (ccccccc): a re-run keeps finished runs. By commit: "
            "aaaaaaa: CNN seed 0.") in markdown_table(report)  # fmt: skip
    report["provenance"]["git_commit"] = "a" * 40
    assert "By commit" not in markdown_table(report)
    report["runs"][0]["git_dirty"] = True
    assert "By commit: aaaaaaa with uncommitted changes: CNN seed 0." in markdown_table(report)

    # a run that failed under a launcher (trial 19: "One seed (no spread measured)" under a row of two seeds, and
    # nothing in the files said which run was missing), and a run kept without throughput
    two = [{**runs[0], "model": "CNN"}, {**runs[0], "model": "CNN", "seed": 1, "throughput": None},
           {**runs[0], "model": "GRU"}]  # fmt: skip
    report = {**summarize(two, "test/pearson"), "seeds_planned": 2,
              "missing": [{"model": "GRU", "seed": 1, "why": "failed: exit status -9 (killed); log: l.log"}]}  # fmt: skip
    table = markdown_table(report)
    assert "One seed" not in table and "Mean ± std over the seeds each row has" in table
    assert "the seeds each row has (CNN 2 of 2, GRU 1 of 2; one: no spread measured) per model;" in table
    assert "Not in the table: GRU seed 1 (failed: exit status -9 (killed); log: l.log)." in table
    assert "Throughput over fewer runs than the row's seeds (" in table and ": CNN 1 of 2." in table
    assert "Mean ± std over 2 seeds" in markdown_table(
        {**summarize(two[:2], "test/pearson"), "seeds_planned": 2}
    )


def test_fit_with_the_default_loggers_writes_csv_and_an_offline_wandb_run_and_never_the_api_key(
    in_tmp, monkeypatch
):
    """`fit` as a user runs it, a process of its own: base.yaml's CSV logger and W&B logger (offline without
    credentials); the W&B API key in the environment lands in no file the run writes, nor in what it prints."""
    secret = "sk-archbench-test-" + "7f3a9c" * 6
    result = run_module(
        "fit", "--config", str(DNA / "gru.yaml"), *TINY_DATA, "--trainer.max_epochs=1", cwd=in_tmp,
        env={"WANDB_API_KEY": secret, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for p in in_tmp.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.name == "config.yaml" for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaked and secret not in result.stdout + result.stderr
    assert (
        "anonymous setting has no effect" not in result.stderr
    )  # W&B's warning at every run, on Lightning's None
    metrics = next((in_tmp / "runs" / "dna").rglob("metrics.csv"))
    val = [float(r["val/pearson"]) for r in _read_csv(metrics) if r.get("val/pearson")]
    runs = find_runs(in_tmp / "runs" / "dna")
    assert len(runs) == 1
    logged = read_run(runs[0])
    assert (
        logged["config"]["params"] == 28_929
    )  # the GRU config (stem 64 x 4 x 15 + GRU + head), as in the README
    assert [h["val/pearson"] for h in logged["history"] if "val/pearson" in h] == pytest.approx(val)
    # the whole run config, as compare's runs log it: the net and optimizer tell a GRU's run from an LSTM's
    config = logged["config"]["config"]
    assert config["model"]["init_args"]["net"]["init_args"]["cell"] == "gru"
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.003
    assert config["trainer"]["max_epochs"] == 1 and "seed_everything" in config
    # the values links gave the task when it was built, not the parsed defaults (trial 26: a language model's said
    # task regression, 1 output)
    task = config["model"]["init_args"]
    assert (
        task["target_mean"] == pytest.approx(logged["config"]["target_mean"]) and task["target_mean"] != 0.0
    )
    # a prediction logs nothing to W&B: no empty run beside the fit's; its predictions go to its run folder
    monkeypatch.setenv("WANDB_MODE", "offline")
    predicted = run_main(
        "predict", "--config", str(DNA / "gru.yaml"), *TINY_DATA, "--ckpt_path=last", cwd=in_tmp
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(find_runs(in_tmp / "runs" / "dna")) == 1
    assert len(list((in_tmp / "runs" / "dna").rglob("predictions.tsv"))) == 1


def test_a_command_line_option_that_erases_the_rows_difference_is_said(capsys):
    """``--model.init_from`` given to the pre-training comparison starts its scratch row from the checkpoint
    too: said before anything trains, with each row's own value; an option the rows share is not."""
    from experiments.compare import Comparison, check_rows

    comparison = Comparison.load(ROOT / "experiments" / "text" / "pretrained" / "compare.yaml")
    check_rows(comparison, ["--model.init_from", "other.ckpt", "--trainer.max_epochs", "1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "warning: compare: the command line (--model.init_from other.ckpt --trainer.max_epochs 1) sets "
        "model.init_args.init_from to other.ckpt in every row, where the rows' own files set it apart (Transformer "
        "(scratch): null; Transformer (MLM pre-trained): runs/mlm_transfer/pretrain/checkpoints/last.ckpt): the "
        "rows no longer differ there; to change one row, give it in that row's model file"
    )
    check_rows(comparison, ["--trainer.max_epochs", "1", "--data.batch_size", "8"])
    assert capsys.readouterr().err == ""


def test_a_misspelt_command_line_option_of_compare_is_said_to_come_from_the_command_line():
    from archbench.errors import ConfigError
    from experiments.compare import Comparison, check_rows

    comparison = Comparison.load(DNA / "compare.yaml")
    with pytest.raises(ConfigError) as err:
        check_rows(comparison, ["--trainer.max_epoch", "1"])
    assert str(err.value).endswith(
        "models.RNN (rnn.yaml): unrecognized arguments: --trainer.max_epoch 1 (did you mean 'max_epochs'?) "
        "(--trainer.max_epoch was given on the command line, to every row)"
    )


def test_a_mapping_given_on_the_command_line_is_said_for_the_option_it_holds():
    """Trial 31: ``--model.net.init_args.moe '{experts: 2, top_k: 3}'`` was blamed on the row's file alone."""
    from experiments.configs import from_command_line

    said = "model.net.init_args.moe.top_k: 3 is not between 1 and moe.experts (2)"
    given = ["--model.net.init_args.moe", "{experts: 2, top_k: 3}"]
    assert from_command_line(said, given, "every row") == (
        " (--model.net.init_args.moe was given on the command line, to every row)"
    )
    assert from_command_line(said, ["--model.net.init_args.mo", "x"], "every row") == ""
    # a section's file or a class chosen sets other keys too: not blamed for this one
    for given in (["--model.net=lit_models.TransformerNet"], ["--model.net.init_args.moe", "moe.yaml"]):
        assert from_command_line(said, given, "every row") == "", given


def test_a_mistake_in_a_rows_file_is_named_with_its_line(tmp_path):
    from archbench.errors import ConfigError
    from experiments.compare import Comparison, check_rows

    (tmp_path / "moe.yaml").write_text(
        "model:\n  class_path: lit_models.PredictionTask\n  init_args:\n    net:\n      class_path: "
        "lit_models.TransformerNet\n      init_args:\n        moe: 8\n"
    )
    (tmp_path / "cmp.yaml").write_text(f"name: x\nmodels:\n  GRU: {DNA / 'gru.yaml'}\n  MoE: moe.yaml\n")
    with pytest.raises(ConfigError) as err:
        check_rows(Comparison.load(tmp_path / "cmp.yaml"), [])
    assert str(err.value) == (
        f"{tmp_path / 'cmp.yaml'}: models.MoE (moe.yaml:7): model.net.moe: expected "
        "MoEOptions as a mapping of its options (experts, top_k, expert, hidden, balance, z_loss, capacity_factor), "
        "or null; Given value: 8"
    )


def test_a_misspelt_class_of_a_package_lists_the_classes_it_exports():
    from experiments.configs import one_line

    said = one_line("model.net: module 'lit_models' has no attribute 'CNNNet'")
    assert said.startswith("model.net: module 'lit_models' has no attribute 'CNNNet' (lit_models has: ")
    assert "DilatedCNN" in said and "RecurrentNet" in said and "TransformerNet" in said


def test_compare_refuses_an_out_folder_of_other_files(in_tmp):
    from archbench.errors import ConfigError

    (in_tmp / "mine").mkdir()
    (in_tmp / "mine" / "results.json").write_text('{"x": 1}')
    with pytest.raises(
        ConfigError, match=r"^--out mine: a folder of other files \(results.json\), not a comparison's"
    ):
        compare(["--config", str(DNA / "compare.yaml"), "--out", "mine", *TINY_DATA])
    assert (in_tmp / "mine" / "results.json").read_text() == '{"x": 1}'


def test_a_misspelt_command_names_the_close_one_and_every_command(capsys):
    """Not LightningCLI's "invalid choice ... (choose from 'fit', 'validate', 'test', 'predict')", which lists
    four of the thirteen commands."""
    from experiments.__main__ import main

    assert main(["comapre", "--config", "x.yaml"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith(
        "error: 'comapre' is not a command (did you mean compare?); commands: fit, validate, "
    )
    assert said.endswith("sweep, lr_find, data") and "\n" not in said


def test_a_data_error_when_a_row_starts_names_the_row_and_leaves_no_run(in_tmp, monkeypatch):
    """A bad row of a data file found when the run sets up (a text split's empty label): the comparison file and
    row are named, and the run's folder and its W&B run go (nothing trained), so neither a failed empty W&B run
    nor a settings file is left; fixed, the same command starts the run afresh."""
    from text_data import reviews, text_args, write_csv

    from archbench.errors import DataError

    monkeypatch.setenv("WANDB_MODE", "offline")
    args = text_args(in_tmp, ROOT / "experiments" / "text" / "lstm.yaml")
    data = [a for a in args if a.startswith("--data.")]
    (in_tmp / "cmp.yaml").write_text(
        f"name: t\nseeds: 1\nout: {in_tmp / 'out'}\nmetric: test/acc\nmodels:\n  LSTM: {ROOT}/experiments/text/lstm.yaml\n"
    )
    bad = write_csv(in_tmp / "d" / "val.csv", [*reviews(10), ("a film", "")])
    run = ["--config", "cmp.yaml", *data, "--trainer.max_steps=1", "--trainer.enable_progress_bar=false"]
    with pytest.raises(DataError) as err:
        compare(run)
    assert str(err.value).startswith(
        f"cmp.yaml: models.LSTM ({ROOT}/experiments/text/lstm.yaml): {bad}: row 11"
    )
    assert not (in_tmp / "out" / "runs").exists() and not list((in_tmp / "out").rglob("*.wandb"))


def test_a_run_that_early_stopping_ends_says_so_with_its_step_and_bounds(in_tmp):
    """Trial 25: a run asked for 300 steps ended at 160 without a line (Lightning prints one for max_steps and
    max_epochs only). With lr 0 the validation loss never improves: patience 1 stops at the second validation."""
    from conftest import CNN, TINY_DATA, run_main

    result = run_main("fit", "--config", CNN, *TINY_DATA, "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                      "--early_stopping.patience=1", "--model.optimizer.init_args.lr=0", "--trainer.max_epochs=10",
                      "--trainer.val_check_interval=1.0", cwd=in_tmp)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "early stopping ended the run at step 8 (epoch 1, of max_epochs 10): Monitored metric val/loss did not "
        "improve in the last 1 records." in result.stdout
    )
