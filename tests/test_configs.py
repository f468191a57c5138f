"""Every YAML under experiments/, found by rglob (not a list): it parses, and what it describes instantiates.

Comparison files load and every model in them instantiates with the comparison's shared settings; trainer
presets build a trainer or say in one line what this machine lacks; every other file instantiates as a run
on tiny data of its modality (files that name no net get a small one).
"""

from pathlib import Path

import pytest
import yaml
from conftest import CNN, ROOT, TINY_DATA, run_main
from image_data import fake_fashion_mnist
from lm_data import lm_args
from seq2seq_data import pair_args
from text_data import reviews, tiny_bert, write_csv

from archbench.errors import ConfigError, DataError
from experiments.cli import ExperimentCLI
from experiments.compare import Comparison

EXPERIMENTS = ROOT / "experiments"
EVERY_YAML = sorted(EXPERIMENTS.rglob("*.yaml"))
CSV_ONLY = [
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.init_args.save_dir=logs",
    "--trainer.enable_progress_bar=false",
]
NO_WEIGHTS = (
    "model: {net: {init_args: {weights: null}}}\n"  # as YAML: jsonargparse reads a bare null as 'None'
)
SMALL_NET = {  # for files that describe data or settings only
    "dna": "--model.net=lit_models.DilatedCNN",
    "text": "--model.net=lit_models.RecurrentNet",
    "vision": "--model.net=lit_models.image_nets.MnistCNN",
    "lm": "--model.net=lit_models.GPT",
    "algorithmic": "--model.net=lit_models.RecurrentNet",
    "seq2seq": "--model.net=lit_models.seq2seq.GRUSeq2Seq",
    "mlm": "--model.net=lit_models.TransformerNet",
}
TINY_ALGORITHMIC = ["--data.n_train=64", "--data.n_val=16", "--data.n_test=16", "--data.batch_size=16"]


def _modality(path: Path) -> str:
    return path.relative_to(EXPERIMENTS).parts[0] if path.parent != EXPERIMENTS else "dna"


def _tiny_data(path: Path, tmp_path: Path) -> list[str]:
    modality = _modality(path)
    if modality == "text":
        rows = reviews(60)
        files = {s: write_csv(tmp_path / f"{s}.csv", part) for s, part in
                 (("train", rows[:40]), ("val", rows[40:50]), ("test", rows[50:]))}  # fmt: skip
        tokenizer = "wordpiece"
        if "minilm" in path.name:  # the pretrained encoder and its own tokenizer, tiny
            tokenizer = str(tiny_bert(tmp_path / "bert", [t for t, _ in rows]))
        args = [f"--data.{s}_path={f}" for s, f in files.items()]
        args += [f"--data.tokenizer={tokenizer}", "--data.tokenizer_vocab_size=100", "--data.labels=null"]
        if "minilm" in path.name:
            args.append(f"--model.net.init_args.path={tokenizer}")
        return [*args, "--data.dataset=null", "--data.train_size=null", "--data.test_size=null"]
    if modality == "lm":  # pretrained weights (`make data smollm2`): the same net, initialised here
        weights = "weights:" in path.read_text()
        return [*lm_args(tmp_path / "corpus"), *(["--config", NO_WEIGHTS] if weights else [])]
    if modality == "vision":
        args = [f"--data.root={fake_fashion_mnist(tmp_path / 'fm')}", "--data.download=false"]
        if (
            "weights_file" in path.read_text()
        ):  # weights files from `make data` / `make vision-transfer`: here
            args += ["--config", "model: {net: {init_args: {weights_file: null}}}\n"]  # the same net, scratch
            net = (yaml.safe_load(path.read_text()).get("model") or {}).get("net") or {}
            size = ((net.get("init_args") or {}).get("model_kwargs") or {}).get("img_size")
            if size:  # the input size an exported file carries (and gives the data), given here in its stead
                args.append(f"--data.img_size={size}")
        return args
    if modality == "mlm":  # a token stream read by a tokenizer with a mask token
        bert = tiny_bert(tmp_path / "bert", [t for t, _ in reviews(60)], masked=True)
        return [*lm_args(tmp_path / "corpus"), f"--data.tokenizer={bert}"]
    if modality == "algorithmic":
        return TINY_ALGORITHMIC
    if modality == "seq2seq":
        return pair_args(tmp_path / "pairs")
    seq_len = "250" if "seed_parity" in str(path) else "60"  # the course's flatten head needs 250
    return [*TINY_DATA, f"--data.simulation.seq_len={seq_len}"]


def _instantiate(files: list[Path], tmp_path: Path, extra: list[str] = ()) -> ExperimentCLI:
    args = [a for f in files for a in ("--config", str(f))]
    net_given = any("net" in (yaml.safe_load(Path(f).read_text()) or {}).get("model", {}) for f in files)
    if not net_given:
        args.append(SMALL_NET[_modality(Path(files[-1]))])
    return ExperimentCLI(args=[*args, *_tiny_data(Path(files[-1]), tmp_path), *CSV_ONLY, *extra], run=False)


@pytest.mark.parametrize("path", EVERY_YAML, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_yaml_parses_and_instantiates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict), path
    if path.parent.name == "trainer":  # a preset: --trainer FILE
        try:
            dna = ["--config", str(EXPERIMENTS / "dna" / "base.yaml"), SMALL_NET["dna"], *TINY_DATA]
            cli = ExperimentCLI(args=[*dna, "--trainer", str(path), *CSV_ONLY], run=False)
        except ConfigError as err:
            assert "gpu" in str(err).lower() and "this machine" in str(err)
        else:
            assert cli.trainer.world_size >= 1
        return
    if path.parent.name == "sweeps":  # a sweep: its runs' configs with every key of the space set
        from experiments.sweep import Sweep, nested

        sweep = Sweep.load(path)
        values = {
            k: spec["values"][0] if spec["type"] == "choice" else spec["low"]
            for k, spec in sweep.space.items()
        }
        files = sweep.config_files()
        args = [a for f in files for a in ("--config", str(f))] + ["--config", yaml.safe_dump(nested(values))]
        cli = ExperimentCLI(args=[*args, *_tiny_data(files[-1], tmp_path), *CSV_ONLY], run=False)
        assert cli.model.parameter_counts()["params"] > 0
        return
    if "models" in raw:  # a comparison file: each run's configs, as compare orders them, instantiate
        comparison = Comparison.load(path)
        for name in comparison.models:
            extra = []
            if any(isinstance(e, dict) and e.get("data", {}).get("train_path") for e in comparison.shared()):
                extra = ["--data.train_path=null", "--data.val_path=null", "--data.test_path=null"]
            if any(isinstance(e, Path) and "weights:" in e.read_text() for e in comparison.shared()):
                extra = ["--config", NO_WEIGHTS]
            model_file = comparison.model_file(name)
            args = [*comparison.run_args(name), *_tiny_data(model_file, tmp_path), *CSV_ONLY, *extra]
            cli = ExperimentCLI(args=args, run=False)
            assert cli.model.parameter_counts()["params"] > 0, name
        return
    if path.name == "yelp.yaml":  # the course's hub setup: offline here, and it says so in one line
        with pytest.raises(DataError, match="offline"):
            cli = ExperimentCLI(args=["--config", str(path), SMALL_NET["text"], *CSV_ONLY], run=False)
            cli.datamodule.setup("fit")
        return
    files = [path] if path != EXPERIMENTS / "base.yaml" else [path, EXPERIMENTS / "dna" / "base.yaml"]
    cli = _instantiate(files, tmp_path)
    assert cli.model.parameter_counts()["params"] > 0


def test_without_a_modality_config_the_data_is_asked_for(in_tmp):
    with pytest.raises(ConfigError, match=r"data: no datamodule chosen .*--config experiments/dna/lstm.yaml"):
        ExperimentCLI(args=["--config", str(EXPERIMENTS / "base.yaml"), SMALL_NET["dna"]], run=False)


def test_an_option_typed_before_a_config_is_said_with_the_order_they_are_read_in(in_tmp, capsys):
    """jsonargparse reads options and config files in order: ``--data.val_fraction 0.3 --config gpt.yaml`` was
    checked before a datamodule was chosen and said only "no datamodule chosen" (trial 15). The order is kept (a
    later file may append to earlier options on purpose), and a note says it."""
    lm = ROOT / "experiments" / "lm" / "gpt.yaml"
    with pytest.raises(ConfigError, match=r"^data: no datamodule chosen yet when --data.val_fraction was read: "
                                          r"options and config files are read in order; put --config first$"):  # fmt: skip
        ExperimentCLI(args=["--data.val_fraction=0.3", "--model.net.init_args.n_layer", "1", "--config", str(lm),
                            *lm_args(in_tmp / "corpus")], run=False)  # fmt: skip
    assert capsys.readouterr().err.splitlines()[0] == (
        "note: --data.val_fraction, --model.net.init_args.n_layer given before --config: options and config files "
        "are read in order, so a later config file may set it again, and an option of a class the file chooses is "
        "read before it is chosen; put --config first"
    )
    said = run_main("fit", "--data.batch_size=8", "--config", lm, "--print_config", cwd=in_tmp)  # the command
    assert said.returncode == 2 and said.stderr.count("note: --data.batch_size given before --config") == 1
    assert said.stderr.strip().splitlines()[-1] == (
        "error: data: no datamodule chosen yet when --data.batch_size was read: options and config files are read "
        "in order; put --config first"
    )
    from experiments.configs import options_before_configs

    assert (
        options_before_configs(["fit", "--data.batch_size", "8", "--trainer.max_epochs", "1"]) == []
    )  # no file
    cli = ExperimentCLI(
        args=["--config", str(lm), *lm_args(in_tmp / "corpus"), "--data.val_fraction=0.3"], run=False
    )
    assert cli.datamodule.hparams.val_fraction == 0.3 and "note:" not in capsys.readouterr().err  # in order


def test_a_key_given_twice_in_a_config_is_refused_with_its_line(tmp_path):
    """YAML keeps the last of two equal keys silently: two comparison rows named alike made a table whose one
    row was the second model under the first one's name."""
    from archbench.errors import ConfigError
    from experiments.configs import check_yaml

    path = tmp_path / "c.yaml"
    path.write_text("name: d\nmodels:\n  CNN: cnn.yaml\n  GRU: gru.yaml\n  CNN: other.yaml\n")
    with pytest.raises(ConfigError) as err:
        check_yaml(path)
    assert str(err.value) == (
        f"{path}:5: models.CNN: given twice in one mapping (YAML would keep the last one alone); rename or remove one"
    )


def test_a_misspelt_key_of_a_comparison_file_names_its_line_and_the_close_key(tmp_path):
    from archbench.errors import ConfigError
    from experiments.compare import Comparison

    path = tmp_path / "c.yaml"
    path.write_text("name: d\nseed: 1\nmodels: {CNN: cnn.yaml}\n")
    with pytest.raises(ConfigError) as err:
        Comparison.load(path)
    assert str(err.value) == f"{path}:2: Option 'seed' is not accepted (did you mean 'seeds'?)"
    path.write_text(
        "name: d\nmodles:\n  CNN: cnn.yaml\n"
    )  # a mapping under it: jsonargparse names 'modles.CNN'
    with pytest.raises(ConfigError) as err:
        Comparison.load(path)
    assert str(err.value) == f"{path}:2: Option 'modles' is not accepted (did you mean 'models'?)"


@pytest.mark.parametrize(
    "text, said",
    [
        ("name: d\nseeds: two\nmodels: {CNN: cnn.yaml}\n", ":2: seeds: Expected a int. Got value: two"),
        ("name: d\nmodels:\n", ":2: models: empty; the file needs it"),
        ("name: d\n", ": models: missing; the file needs it"),
        ("name: d\nmodels:\n  CNN: nope.yaml\n", ":3: models.CNN: file 'nope.yaml' not found (looked at "),
        # null where a value is needed: jsonargparse takes it, and the comparison stopped on a bare TypeError
        (f"models: {{CNN: {CNN}}}\nseeds: null\n", ":2: seeds: null (empty) where it takes an integer"),
        (f"models: {{CNN: {CNN}}}\nmetric:\n", ":2: metric: null (empty) where it takes a string"),
        (f"models: {{CNN: {CNN}}}\nseeds: 0\n", ":2: seeds: 0 is not a positive integer"),
        # trial 31: the file's name alone, where its other mistakes give the line
        (
            f"models: {{CNN: {CNN}}}\nbudget_flops: -3.0e9\n",
            ":2: budget_flops: -3e+09 is not a positive number",
        ),
        (f"models: {{CNN: {CNN}}}\nlauncher: locl\n", ":2: launcher: 'locl' is not one of sequential, local"),
        # a row's name is its runs' folder: a path in it wrote outside the output folder (trial 19)
        (f"models:\n  CNN: {CNN}\n  ../../x: {CNN}\n", ":3: models: the row name '../../x' names its runs' "),
        (
            f"models:\n  CNN: {CNN}\n  a/../CNN: {CNN}\n",
            ":3: models: the row name 'a/../CNN' names its runs'",
        ),
        (
            f"models:\n  CNN: {CNN}\n  /tmp/x: {CNN}\n",
            ":3: models: the row name '/tmp/x' names its runs' folders",
        ),
        # trial 34: a row's file and a sweep's best.yaml, said at the models: line as "Expected a str"
        (
            f"models:\n  CNN: {CNN}\n  tuned: [{CNN}, best.yaml]\n",
            ":3: models.tuned: a row is one config file, not a list (2 given); write the settings",
        ),
        # trial 34: rows that look one in the table, or are one folder on macOS and Windows
        (
            f"models:\n  CNN: {CNN}\n  'CNN ': {CNN}\n",
            ":3: models: the row name 'CNN ' begins or ends with a space",
        ),
        (
            f"models:\n  CNN: {CNN}\n  cnn: {CNN}\n",
            ":3: models: the row names 'CNN' and 'cnn' differ only in case",
        ),
    ],
)
def test_a_comparison_files_wrong_or_empty_value_names_its_line(tmp_path, text, said):
    from archbench.errors import ConfigError
    from experiments.compare import Comparison

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Comparison.load(path)
    assert str(err.value).startswith(f"{path}{said}")
