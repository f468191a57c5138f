"""Every class of user mistake is one line that names the file, line, option or value: options out of range,
unknown or mistyped options, a missing or broken config file, a model that cannot be built, text files that do
not load, a folder given as a file, mixup with an odd batch. (Bad checkpoints: test_guards.py; bad DNA and
text records: test_dna_io.py and test_text.py.)"""

import re
from pathlib import Path

import pytest
from conftest import CNN, CSV_ONLY, ROOT, TINY_DATA, last_line, run_main, run_module
from image_data import image_args
from jsonargparse import ArgumentError
from text_data import reviews, write_csv

from archbench.errors import ConfigError, DataError, first_line
from experiments.cli import ExperimentCLI
from experiments.configs import one_line


def _cli(*options):
    return ExperimentCLI(args=["--config", CNN, *TINY_DATA, *CSV_ONLY, *options], run=False)


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--data.batch_size=-4", "data.batch_size: -4 is not a positive integer"),
        ("--data.batch_size=0", "data.batch_size: 0 is not a positive integer"),
        ("--data.val_fraction=1.5", "data.val_fraction: 1.5 is outside [0, 1)"),
        ("--data.test_fraction=-0.1", "data.test_fraction: -0.1 is outside [0, 1)"),
        ("--data.num_workers=-1", "data.num_workers: -1 is not a non-negative integer"),
        ("--model.label_smoothing=1.0", "model.label_smoothing: 1.0 is outside [0, 1)"),
        # trial 29: a regression ignored it unsaid
        (
            "--model.confidence_threshold=0.9",
            "model.confidence_threshold: 0.9 is for classification (a class probability), and this task is "
            "regression",
        ),
        ("--config=nope.yaml", "--config: file 'nope.yaml' not found"),
    ],
)
def test_values_out_of_range_name_the_option_and_value(option, expected, in_tmp):
    with pytest.raises((DataError, ConfigError)) as caught:
        _cli(option)
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--data.batch_sise=3", "data: Option 'batch_sise' is not accepted"),
        ("--trainer.max_epochs=abc", "trainer.max_epochs: Expected a int; Given value: abc"),
        ("--model.net.init_args.bogus=1", "model.net: Option 'bogus' is not accepted"),
        # an option of a variant the net does not have: said of the option, not of its key
        (
            "--model.net.init_args.moe.experts=8",
            "model.net: Option 'moe' is not accepted (DilatedCNN takes: ",
        ),
        ("--model.optimizer=torch.optim.Nope", "model.optimizer: Expected a path but torch.optim.Nope"),
        # trials 27 and 28: jsonargparse's "Type typing.Callable[...] expects a function or a callable class:
        # Option 'lrr' is not accepted. Got value: Namespace(...)", with no close name
        (
            "--model.optimizer.init_args.lrr=0.1",
            "model.optimizer: torch.optim.AdamW takes no option 'lrr' (did you mean 'lr'?)",
        ),  # fmt: skip
        (
            "--model.optimizer.init_args.moment=0.9",
            "model.optimizer: torch.optim.AdamW takes no option 'moment' (AdamW takes: lr, betas, eps, weight_decay,",
        ),
        (
            "--data.on_bad_line=ignore",
            "data.on_bad_line: Expected a typing.Literal['error', 'skip']. Got value: ignore",
        ),
        # trial 32: jsonargparse's "Type typing.Callable[[torch.optim.optimizer.Optimizer], ...] expects a function
        # or a callable class: the following arguments are required: step_size"
        (
            "--model.lr_scheduler=torch.optim.lr_scheduler.StepLR",
            "model.lr_scheduler: torch.optim.lr_scheduler.StepLR needs step_size: give "
            "--model.lr_scheduler.step_size VALUE (or init_args: {step_size: VALUE} under its class_path)",
        ),
        # and "... callable class: Parser key "betas": Expected a tuple. Got value: 0.9. Got value: Namespace(...)"
        (
            "--model.optimizer.betas=0.9",
            "model.optimizer.betas: Expected a tuple. Got value: 0.9 (a list in brackets, e.g. [0.9, 0.999])",
        ),
    ],
)
def test_unknown_and_mistyped_options_name_the_option(option, expected, in_tmp):
    with pytest.raises(ArgumentError) as caught:
        _cli(option)
    assert one_line(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "option, expected",
    [
        (  # a list item's class says why; its base class's "not accepted" is left out (it contradicted that)
            "--trainer.callbacks.prompts=[123, 45]",
            "trainer.callbacks.prompts: Expected a str. Got value: 123 (YAML read a number where text goes: write "
            "the text in quotes)",
        ),
        ("--trainer.callbacks.max_new_tokens=abc", "trainer.callbacks.max_new_tokens: Expected a int. Got value: abc"),
    ],
)  # fmt: skip
def test_a_callback_option_of_the_wrong_type_says_only_why(option, expected, tmp_path):
    (tmp_path / "corpus.txt").write_text("some text\n" * 50)
    lm = str(ROOT / "experiments" / "lm" / "gpt.yaml")
    with pytest.raises(ArgumentError) as caught:
        ExperimentCLI(
            args=["--config", lm, f"--data.train_path={tmp_path / 'corpus.txt'}", option], run=False
        )
    assert one_line(caught.value) == expected


def test_a_trainer_option_misspelt_in_a_yaml_file_names_the_close_one(in_tmp):
    (in_tmp / "mine.yaml").write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(ArgumentError) as caught:
        _cli("--config", str(in_tmp / "mine.yaml"))
    assert one_line(caught.value).endswith("option 'max_epoch' (did you mean 'max_epochs'?)")


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--model.net.init_args.nhead=5"], "model.net.init_args.nhead: 5 heads do not divide d_model 64"),
        (["--model.net.init_args.moe={experts: 8, top_k: 9}"],
         "model.net.init_args.moe.top_k: 9 is not between 1 and moe.experts (8)"),
        (["--model.net.init_args.attention=local", "--model.net.init_args.window=0"],
         "model.net.init_args.window: 0 is below 1 (attention 'local' needs a window of positions)"),
        (["--model.net.init_args.universal={threshold: 1.5}"],
         "model.net.init_args.universal.threshold: 1.5 is not between 0 and 1"),
    ],
)  # fmt: skip
def test_a_model_that_cannot_be_built_says_which_option_and_why(in_tmp, options, expected):
    transformer = str(CNN).replace("cnn.yaml", "transformer.yaml")
    with pytest.raises(ConfigError) as caught:
        ExperimentCLI(args=["--config", transformer, *TINY_DATA, *CSV_ONLY, *options], run=False)
    assert str(caught.value) == expected


def test_a_missing_weights_file_says_which_and_where_it_comes_from(tmp_path):
    from archbench.errors import PretrainedError

    args = [
        *image_args(tmp_path, "dinov2_linear_probe.yaml"),
        "--model.net.init_args.weights_file=nope.safetensors",
    ]
    with pytest.raises(PretrainedError, match=r"^model.net.init_args.weights_file: 'nope.safetensors' not found, "
                                              r"relative to the working folder .* \(.*python -m experiments data NAME"
                                              r".*`python -m experiments data nope`"):  # fmt: skip
        ExperimentCLI(args=args, run=False)


def test_config_files_that_are_folders_or_not_yaml(in_tmp):
    (in_tmp / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"--config: .*folder.yaml is a directory, expected a YAML file"):
        _cli("--config=folder.yaml")
    (in_tmp / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping of options"):
        _cli("--config=list.yaml")
    (in_tmp / "latin.yaml").write_bytes(b"trainer: {max_epochs: 1}\n# caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"latin.yaml: not UTF-8 text: byte 31 \(line 2\) is 0xe9; save the file as UTF-8"
    ):
        _cli("--config=latin.yaml")


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("latin.csv", b"text,label\nfine,a\ncaf\xe9 au lait,b\n", "latin.csv: not UTF-8 text: byte 22 (line 3) is 0xe9"),
        ("empty.csv", b"", "empty.csv: file is empty"),
        ("header.csv", b"text,label\n", "header.csv: no data rows (a header only?)"),
        ("ragged.csv", b"text,label\nfine,a\nsome, more,b\nok,a\n", "ragged.csv: line 3 has 3 fields, the header has 2"),
        ("ragged.tsv", b"text\tlabel\nfine\ta\nsome\tmore\tb\n", "ragged.tsv: line 3 has 3 fields, the header has 2"),
        # pandas said "EOF inside string starting at row 1", a row that is not the quote's line
        ("open.csv", b'text,label\nfine,a\n"not closed, b\nok,a\nfine,b\n',
         "open.csv: line 3: a quote opened there is never closed (the file ends inside it)"),
        # a row short of a field: pandas fills it empty, and the message said only "empty" (trial 18)
        ("short.csv", b"text,label\nfine,a\n\nno label here\nok,b\n",
         "short.csv: row 2 (line 4): column 'label' is empty (the row has 1 field, the header 2)"),
        ("broken.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": \n', "broken.jsonl: line 2 is not a JSON object"),
        ("mixed.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n',
         "mixed.jsonl: row 2 (line 2): column 'label' holds \"x\" (text) where row 1 (line 1) holds 1 (a number or other JSON)"),
        ("late.jsonl", b'{"text": "a", "label": null}\n' + b'{"text": "a", "label": "x"}\n' * 10_001 + b'{"text": "b", "label": 2}\n',
         "late.jsonl: row 10003 (line 10003): column 'label' holds 2 (a number or other JSON) where row 2 (line 2) holds \"x\" (text)"),
        ("latin.jsonl", b'{"text": "fine", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n',
         "latin.jsonl: not UTF-8 text: byte 45 (line 2) is 0xe9"),
    ],
)  # fmt: skip
def test_text_files_that_do_not_load_say_why(name, content, expected, tmp_path):
    from datamodules.text import TextClassificationDataModule

    path = tmp_path / name
    path.write_bytes(content)
    test = write_csv(tmp_path / "test.csv", reviews(10))
    with pytest.raises(DataError) as caught:
        TextClassificationDataModule(
            train_path=str(path), test_path=str(test), cache_dir=str(tmp_path / "c")
        ).setup()
    assert str(caught.value).startswith(
        str(tmp_path / expected.split(":")[0]) + ":" + expected.split(":", 1)[1]
    )


def test_a_folder_given_as_a_data_file(tmp_path):
    from datamodules.dna import DNADataModule
    from datamodules.text import TextClassificationDataModule

    (tmp_path / "train.csv").mkdir()
    with pytest.raises(
        DataError, match=r"data.train_path: '.*train.csv' is a directory, expected a data file"
    ):
        TextClassificationDataModule(
            train_path=str(tmp_path / "train.csv"), cache_dir=str(tmp_path / "c")
        ).setup()
    with pytest.raises(
        DataError, match=r"train.csv: is a directory, expected a data file or an encoded DNA folder"
    ):
        DNADataModule(train_path=str(tmp_path / "train.csv")).setup()


def test_mixup_with_an_odd_batch_says_why(tmp_path):
    cli = ExperimentCLI(
        args=[*image_args(tmp_path, "mnist_cnn.yaml"), "--data.mixup_alpha=0.4", "--data.batch_size=7"],
        run=False,
    )
    with pytest.raises(
        DataError, match=r"data.batch_size: 7 images per device is odd; mixup and cutmix pair"
    ):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # a batch larger than the training images: no full batch, so none trained, and the command ended with status
    # 0 and no model (trial 18); refused as the command starts, nothing written
    n = len(cli.datamodule._load()["train"])
    result = run_main("fit", *image_args(tmp_path, "mnist_cnn.yaml"), "--data.mixup_alpha=0.4",
                      f"--data.batch_size={n + 2}", "--trainer.default_root_dir=refused", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and not (tmp_path / "refused").exists()
    # a global batch is split over the devices and accumulated batches, which the trainer knows: more images in
    # all than the split holds, a quarter of them per device (review: refused before the trainer was asked)
    total = (n + 2) + (-(n + 2)) % 8
    ExperimentCLI(args=["fit", *image_args(tmp_path, "mnist_cnn.yaml"), "--data.mixup_alpha=0.4",
                        f"--data.global_batch_size={total}", "--trainer.accumulate_grad_batches=4",
                        "--trainer.max_steps=1", f"--trainer.default_root_dir={tmp_path / 'global'}"])  # fmt: skip
    assert list((tmp_path / "global").rglob("last.ckpt"))
    assert result.stderr.splitlines()[-1] == (
        f"error: data.batch_size: {n + 2} images per device, and the training split holds {n} ({n} per process): "
        f"mixup and cutmix train on full batches only (the last incomplete one is dropped), so no batch would "
        f"train; give at most {n // 2 * 2} images per device"
    )


def test_the_command_prints_each_mistake_as_one_line(in_tmp):
    """The command's own path: one line on stderr, exit status 2, nothing written. In a process of its own
    for one mistake, in this one for the other."""
    result = run_module("fit", "--config", CNN, *TINY_DATA, "--data.batch_size=-4", cwd=in_tmp)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == "error: data.batch_size: -4 is not a positive integer"
    result = run_main("fit", "--config", CNN, *TINY_DATA, "--data.batch_sise=3", cwd=in_tmp)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: data: Option 'batch_sise' is not accepted (did you mean 'batch_size'?)"
    )
    result = run_main(
        "fit", "--config", CNN, *TINY_DATA, "--model.warmth=0.1", cwd=in_tmp
    )  # no close name: them all
    assert result.stderr.startswith(
        "error: model: Option 'warmth' is not accepted (PredictionTask takes: net, task,"
    )
    assert ", optimizer, lr_scheduler," in result.stderr  # the base task's, through **kwargs
    result = run_main("fit", "--config", CNN, *TINY_DATA, "--model.lr=0.1", cwd=in_tmp)
    assert result.stderr.strip().endswith(
        "Option 'lr' is not accepted (an optimizer's option: --model.optimizer.lr)"
    )
    # a class_path's class misspelt: the module's close class, or its own classes
    result = run_main("fit", "--config", CNN, *TINY_DATA, "--data=datamodules.dna.DNADataModul", cwd=in_tmp)
    assert "(did you mean datamodules.dna.DNADataModule?)" in result.stderr
    result = run_main(
        "fit", "--config", CNN, *TINY_DATA, "--model.net=lit_models.recurrent.LSTMNet", cwd=in_tmp
    )
    assert "(lit_models.recurrent has: RecurrentNet)" in result.stderr
    # no abbreviations: a prefix of an option is refused, with the option it begins
    for given, meant in (("max_ep", "max_epochs"), ("max_step", "max_steps")):
        result = run_main("fit", "--config", CNN, *TINY_DATA, f"--trainer.{given}=1", cwd=in_tmp)
        assert result.returncode == 2
        assert (
            result.stderr.strip()
            == f"error: unrecognized arguments: --trainer.{given}=1 (did you mean '{meant}'?)"
        )
    result = run_main(
        "fit", "--config", CNN, *TINY_DATA, "--optimizer.lr=0.1", cwd=in_tmp
    )  # LightningCLI's habit
    assert result.stderr.strip().endswith("(the optimizer and its schedule are the task's: --model.optimizer, "
                                          "--model.lr_scheduler)")  # fmt: skip
    assert sorted(p.name for p in in_tmp.iterdir()) == []  # nothing written


def test_a_data_error_found_at_setup_is_one_line_and_nothing_is_written(in_tmp):
    """The validation file holds a pair without its target. Lightning's datamodule ``__str__`` (which
    jsonargparse calls while linking) builds every loader and swallowed this error, leaving ``KeyError: 'val'``;
    and the loggers used to open their run folder before the data was read."""
    from conftest import ROOT

    (in_tmp / "train.tsv").write_text("word\tphonemes\nab\tA1 B\nba\tB A1\n")
    (in_tmp / "val.tsv").write_text("word\tphonemes\nab\n")
    (in_tmp / "test.tsv").write_text("word\tphonemes\nab\tA1 B\n")
    config = str(ROOT / "experiments" / "seq2seq" / "gru.yaml")
    paths = [f"--data.{s}_path={in_tmp / s}.tsv" for s in ("train", "val", "test")]
    result = run_main("fit", "--config", config, *paths, "--trainer.max_steps=2", cwd=in_tmp)
    assert result.returncode == 2
    assert (
        last_line(result)
        == f"error: {in_tmp / 'val.tsv'}:2: 1 fields, the header has 2 (the last given: 'word' = 'ab')"
    )
    written = sorted(p.name for p in in_tmp.rglob("*") if p.is_file())
    assert written == [
        "test.tsv",
        "train.tsv",
        "val.tsv",
    ]  # no run folder's files (the W&B folder is made empty)


def test_a_validation_interval_of_zero_is_refused(in_tmp):
    with pytest.raises(ConfigError, match=r"^trainer.val_check_interval: 0 is neither a positive number"):
        _cli("--trainer.val_check_interval=0")
    _cli("--trainer.val_check_interval=00:00:10:00")  # a time is Lightning's too: not refused


def test_a_file_that_ends_inside_a_character_names_where(tmp_path):
    from datamodules.files import first_non_utf8

    path = tmp_path / "cut.tsv"
    path.write_bytes("word\tphonemes\ncafé\tK AE1 F\n".encode()[:-9] + b"\n\xc3")  # the last byte: half an é
    assert first_non_utf8(path) == (len(path.read_bytes()), 3, 0xC3)  # the file's last byte, counted from 1


def test_a_fasta_file_and_null_sizes_say_what_they_are(tmp_path):
    from datamodules.dna_io import read_dna
    from datamodules.text import TextClassificationDataModule

    (tmp_path / "train.fa").write_text(">seq1 0.5\nACGTACGT\n")
    with pytest.raises(DataError, match=r"train.fa:1: a FASTA header \('>seq1 0.5'\): FASTA is not read"):
        read_dna(tmp_path / "train.fa")
    with pytest.raises(DataError, match=r"^data.batch_size: None is not a positive integer"):
        _cli("--data.batch_size=null")
    with pytest.raises(DataError, match=r"^data.max_length: None is not a length of at least 2"):
        TextClassificationDataModule(train_path="x.csv", max_length=None)


def test_dna_class_ids_that_training_never_has_are_said(tmp_path):
    from datamodules.dna import DNADataModule

    (tmp_path / "gap.txt").write_text("ACGTACGTAC 0\nACGTTTGTAC 7\nACGAACGTAC 0\nACCTACGTAC 7\n" * 3)
    data = DNADataModule(train_path=str(tmp_path / "gap.txt"), task="classification", val_fraction=0.25,
                         test_fraction=0.25)  # fmt: skip
    with pytest.warns(UserWarning, match=r"gap.txt: class ids 1, 2, 3, 4, 5, 6 never occur in training, yet the head "
                                         r"has 8 outputs"):  # fmt: skip
        assert data.num_outputs == 8


def test_an_output_path_that_is_a_folder_or_below_a_file_is_one_line(tmp_path):
    """export --out (and every file the commands write) names the path; nothing is written or left behind."""
    from datamodules.files import write_atomic

    (tmp_path / "dir").mkdir()
    (tmp_path / "afile").write_text("x")
    result = run_main("export", "--config", CNN, "--ckpt", "missing.ckpt", "--out", str(tmp_path / "dir"),
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        last_line(result) == f"error: --out {tmp_path / 'dir'}: is a folder; give the name of a file to write"
    )
    with pytest.raises(ConfigError, match=r"afile is a file, not a folder"):
        write_atomic(tmp_path / "afile" / "w.safetensors", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir"] and not list(
        (tmp_path / "dir").iterdir()
    )


def test_pretrained_weights_that_are_not_a_language_model_are_one_line(tmp_path):
    """``generate`` / ``probe --weights`` on what is not a causal LM: another kind of file, a folder without a
    model, a config.json given as the file, a GGUF download cut short (each was a transformers traceback)."""
    from experiments.generate import load_from_weights

    (tmp_path / "vit.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "empty").mkdir()
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "m.gguf").write_bytes(b"GGUFxxxx")
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"GGUFxxxx")
    cases = {
        "vit.safetensors": "are not a language model: give a .gguf file or a folder holding one or a transformers",
        "empty": "the folder holds neither a .gguf file nor a config.json",
        "hf/config.json": "are not a language model",
        "cut": "cut/m.gguf' could not be read as a model (",
        "cut/m.gguf": "could not be read as a model (",
        "two": "holds 2 .gguf files (a.gguf, b.gguf): name the one to use",  # which one would be a guess
    }
    for name, expected in cases.items():
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_from_weights(str(tmp_path / name))


def test_a_plot_named_with_no_picture_format_is_refused_before_the_work(tmp_path):
    from experiments.lr_find import main as lr_find

    with pytest.raises(ConfigError, match=r"lr\.xyz: name the picture with its format: .*\.png.*\.svg"):
        lr_find(["--config", "c.yaml", "--out", str(tmp_path / "lr.xyz")])  # c.yaml is never read
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--max_new_tokens=0", "generate --max_new_tokens: 0 is not a positive number of tokens"),
        ("--top_k=0", "generate --top_k: 0 is not a positive number of tokens"),
        ("--temperature=-1", "generate --temperature: -1.0 is below 0 (0 is greedy)"),
        ("--temperature=nan", "generate --temperature: nan is not a finite number (0 is greedy)"),
        ("--temperature=inf", "generate --temperature: inf is not a finite number (0 is greedy)"),
        ("--top_p=nan", "generate: --top_p nan is outside (0, 1]"),
        ("--top_p=inf", "generate: --top_p inf is outside (0, 1]"),
    ],
)
def test_generate_names_the_option_out_of_range(tmp_path, option, expected):
    result = run_main("generate", "--weights", "w.safetensors", "--prompt", "the", option, cwd=tmp_path)
    assert result.returncode == 2 and last_line(result) == f"error: {expected}"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["generate", "--weights", "w", "--prompt", "the", "--temprature", "0.5"],
         "generate: unrecognized option '--temprature' (did you mean --temperature?)"),
        # either spelling of an option's word breaks is taken: --top-p is --top_p, --seq_len is --seq-len
        (["generate", "--weights", "w", "--prompt", "the", "--top-p=1.5"], "generate: --top_p 1.5 is outside (0, 1]"),
        (["align", "--config", "c.yaml", "--txt", "slim"], "align: unrecognized option '--txt' (did you mean --text?)"),
        (["align", "--config", "c.yaml", "--text", "  "],
         "align --text: '  ' holds no symbols; give the source to decode and look at (a word for G2P)"),
        (["attention", "--ckpt", "c.ckpt", "--text", "a", "--outt", "m.png"],
         "attention: unrecognized option '--outt' (did you mean --out?)"),
        (["lr_find", "--config", "c.yaml", "--max-lrr", "1"], "lr_find: unrecognized option '--max-lrr' (did you mean --max_lr?)"),
        (["sweep", "--config", "s.yaml", "--trails", "3"], "sweep: unrecognized option '--trails' (did you mean --trials?)"),
        (["data", "simulate", "--out", "s", "--seq_len", "5"], "data simulate --seq-len: 5 is below 40 (the simulator's grammar)"),
        (["data", "simulate", "--out", "s", "--n-train", "0"], "data simulate --n-train: 0 is not a positive count"),
        (["data", "simulate", "--out", "s", "--seq-len", "5"],
         "data simulate --seq-len: 5 is below 40 (the simulator's grammar)"),
        (["data", "simulate", "--out", "s", "--seed", "-1"], "data simulate --seed: -1 is not a non-negative integer"),
        (["data", "encode", "--input", "x.txt", "--out", "x.txt"], "x.txt: is a file, not a folder to encode into"),
        (["compare", "--config", str(ROOT / "experiments" / "dna" / "compare.yaml"), "--model", "CNN"],
         "compare: --model CNN sets every row's task (model), not the rows to run: did you mean --models CNN?"),
        (["compare", "--config", "c.yaml", "--seed", "2"], "compare: unrecognized option '--seed' (did you mean --seeds?): "
         "runs take --data.*, --model.*, --trainer.*, --early_stopping.*"),
        (["generate", "--weights", "w", "--prompt", "the", "--zzz", "1"],  # none close: not ignored either
         "generate --weights: unrecognized option '--zzz' (a run's options go with --ckpt)"),
        (["generate", "--weights", "w", "--ckpt", "c.ckpt", "--prompt", "the"],
         "generate: give --ckpt (a run's checkpoint) or --weights (pretrained), not both"),
        (["probe", "crows_pairs", "--weights", "w", "--zzz", "1"],
         "probe --weights: unrecognized option '--zzz' (a run's options go with --ckpt)"),
        # argparse's own refusals: one line too, not its usage text
        (["generate", "--weights", "w", "--prompt", "the", "--top", "5"],
         "generate: ambiguous option: --top could match --top_k, --top_p"),
        (["lr_find", "--config", "c.yaml", "--min_lr", "nan"], "lr_find: argument --min_lr: nan is not a finite number"),
        (["lr_find", "--config", "c.yaml", "--num_training", "0"], "lr_find --num_training: 0 is below 2"),
        (["lr_find", "--config", "c.yaml", "--min-lr", "1", "--max-lr", "0.001"],
         "lr_find: --min_lr 1 and --max_lr 0.001 are not a range above 0"),
        (["compare", "--config", "c.yaml", "--budget_flops", "inf"],
         "compare: argument --budget_flops: inf is not a finite number"),
        # a negative number argparse would take for an option ("expected one argument")
        (["compare", "--config", str(ROOT / "experiments" / "dna" / "compare.yaml"), "--budget_flops", "-1e9"],
         "--budget_flops: -1e+09 is not a positive number"),
        # a step bound beside the budget: the budget's steps won, and the run's config kept the bound (trial 15)
        (["compare", "--config", str(ROOT / "experiments" / "dna" / "compare.yaml"), "--budget_flops", "5e9",
          "--trainer.max_steps", "3"],
         "--trainer.max_steps: --budget_flops 5e+09 sets each row's steps from its cost, in place of the configs' "
         "step and epoch bounds; give one of them"),
    ],
)  # fmt: skip
def test_a_commands_own_option_misspelt_names_the_close_one(tmp_path, args, expected):
    (tmp_path / "x.txt").write_text("ACGT 1\n")
    result = run_main(*args, cwd=tmp_path)
    assert result.returncode == 2 and last_line(result) == f"error: {expected}"
    assert not (tmp_path / "s").exists()  # nothing written


def test_a_run_folder_that_is_a_file_is_refused_before_anything_is_built(in_tmp):
    """trainer.default_root_dir and a logger's save_dir that are files, or lie inside one, are one line each
    (they were a logger's FileExistsError / NotADirectoryError or fsspec's traceback); so is one in a folder
    nothing can be written in (trial 20: a FileNotFoundError traceback from the logger; /proc refuses root too)."""
    if Path("/proc/self").is_dir():
        with pytest.raises(ConfigError, match=r"^trainer.default_root_dir: /proc/none/run: nothing can be written in "
                                              r"/proc \(.*\)$"):  # fmt: skip
            _cli("--trainer.default_root_dir=/proc/none/run")
    (in_tmp / "taken").write_text("x")
    with pytest.raises(ConfigError, match=r"^trainer.default_root_dir: taken is a file, not a folder$"):
        _cli("--trainer.default_root_dir=taken")
    with pytest.raises(
        ConfigError, match=r"^trainer.default_root_dir: taken/sub: taken is a file, not a folder$"
    ):
        _cli("--trainer.default_root_dir=taken/sub", "--trainer.logger=false")
    with pytest.raises(
        ConfigError, match=r"^trainer.logger\[0\].init_args.save_dir: taken is a file, not a folder$"
    ):
        ExperimentCLI(args=["--config", CNN, *TINY_DATA, *CSV_ONLY[:1], "--trainer.logger.init_args.save_dir=taken"],
                      run=False)  # fmt: skip


@pytest.mark.parametrize(
    "command, args, written",
    [
        ("probe", ["crows_pairs", "--weights", "w"], "probe.json"),
        ("lr_find", ["--config", CNN], "x.png"),
        ("attention", ["--config", CNN, "--text", "ACGT"], "a.png"),
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_the_work(tmp_path, command, args, written):
    """probe scored every pair (minutes with a pretrained LM) before finding its --out was a file."""
    import importlib

    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" / ("" if command == "probe" else written)
    main = importlib.import_module(f"experiments.{command}").main
    # probe's --out is a folder (for probe.json and probe.md): named as given
    shown = "taken" if command == "probe" else f"taken/{written}: .*taken"
    with pytest.raises(ConfigError, match=rf"^--out[: ].*{shown} is a file, not a folder$"):
        main([*args, "--out", str(out).rstrip("/")])


def test_data_simulate_leaves_the_same_files_as_they_are_and_never_writes_over_other_data(tmp_path, capsys):
    from experiments.data import main as data_main

    out = tmp_path / "s"
    small = [
        "simulate",
        "--out",
        str(out),
        "--n-train",
        "30",
        "--n-val",
        "10",
        "--n-test",
        "10",
        "--seq-len",
        "40",
    ]
    data_main(small)
    assert "left as they were" not in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    data_main(
        small
    )  # the same data: make data may run it twice; left as they are (a comparison's fingerprint
    assert {
        p.name: p.stat().st_mtime_ns for p in out.iterdir()
    } == stamps  # of a large file is size and time)
    assert "(there already, the same: left as they were)" in capsys.readouterr().out  # said (trial 35)
    with pytest.raises(ConfigError) as caught:
        data_main([*small, "--seed", "1"])
    assert str(caught.value) == (
        f"data simulate --out: {out / 'train.txt'} exists and holds other data (another seed or size, or a file of "
        "your own); give another --out, or delete it first"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_choice_misspelt_in_a_yaml_file_is_one_line_without_the_whole_model_repeated(in_tmp):
    transformer = str(CNN).replace("cnn.yaml", "transformer.yaml")
    (in_tmp / "mine.yaml").write_text(
        "model:\n  net:\n    init_args:\n      moe: {experts: 4, expert: swigl}\n"
    )
    with pytest.raises(ArgumentError) as caught:
        ExperimentCLI(
            args=["--config", transformer, "--config", "mine.yaml", *TINY_DATA, *CSV_ONLY], run=False
        )
    assert (
        one_line(caught.value)
        == "model.net.moe.expert: Expected a typing.Literal['swiglu', 'gelu']. Got value: swigl"
    )


@pytest.mark.parametrize(
    "yaml_text, expected",
    [  # a dataclass of options given a scalar: its keys, not jsonargparse's advice on class paths
        ("model:\n  init_args:\n    net:\n      init_args:\n        moe: 8\n",
         "mine.yaml:5: model.net.moe: expected MoEOptions as a mapping of its options (experts, top_k, expert, "
         "hidden, balance, z_loss, capacity_factor), or null; Given value: 8"),
        ("model:\n  net:\n    init_args:\n      universal: 3\n",
         "mine.yaml:4: model.net.universal: expected UniversalOptions as a mapping of its options (act, ponder_cost, "
         "threshold, halt_bias), or null; Given value: 3"),
        # the net's init_args one level too far left: beside net, in the task's own options
        ("model:\n  init_args:\n    net:\n      class_path: lit_models.TransformerNet\n    init_args:\n"
         "      d_model: 32\n",
         "mine.yaml:6: model: Option 'init_args.d_model' is not accepted (options under an init_args of their own: "
         "indent them under the class_path they belong to)"),
        # the net's init_args at the task's level, beside net (no class_path of the task's in the file)
        ("model:\n  net:\n    class_path: lit_models.TransformerNet\n  init_args:\n    d_model: 32\n",
         "mine.yaml:1: model: init_args (d_model) beside net: a class's options go all under its init_args or all "
         "beside its class_path; is this init_args meant for net (indented one level too far left)?"),
        ("trainer:\n  max_epoch: 3\n",
         "mine.yaml:2: Subcommand 'fit' does not accept option 'trainer.max_epoch' (did you mean 'max_epochs'?)"),
        ("model:\n  net:\n    init_args:\n      d_model: abc\n",
         "mine.yaml:4: model.net.d_model: Expected a int. Got value: abc"),
    ],
)  # fmt: skip
def test_a_mistake_in_a_config_file_names_the_files_line(in_tmp, yaml_text, expected):
    """The command's one line starts with FILE:LINE of the config file that set the option (the last given file
    that sets it, the one that wins); an option the command line sets is named without a file."""
    transformer = str(CNN).replace("cnn.yaml", "transformer.yaml")
    (in_tmp / "mine.yaml").write_text(yaml_text)
    result = run_main("fit", "--config", transformer, "--config", "mine.yaml", *TINY_DATA, cwd=in_tmp)
    assert result.returncode == 2 and last_line(result) == f"error: {expected}"
    if "moe" in yaml_text:
        on_line = run_main("fit", "--config", transformer, "--model.net.init_args.moe=8", cwd=in_tmp)
        assert last_line(on_line) == "error: " + expected.removeprefix("mine.yaml:5: ")


def test_a_value_the_optimizer_refuses_is_one_line_before_anything_is_written(in_tmp):
    """torch's optimizers check their values when built, in configure_optimizers once the run folder and the
    W&B run exist: the task builds them once when it is built, so the refusal comes first."""
    for option, said in [
        ("--model.optimizer.init_args.lr=-0.1", "model.optimizer: Invalid learning rate: -0.1"),
        ("--model.optimizer.init_args.betas=[0.9,1.5]", "model.optimizer: Invalid beta parameter at index 1: 1.5"),
        ("--model.lr_scheduler.init_args.warmup_fraction=2",
         "model.lr_scheduler: WarmupCosineLR: warmup_fraction 2.0 is outside [0, 1)"),
    ]:  # fmt: skip
        result = run_main(
            "fit", "--config", CNN, *TINY_DATA, option, "--trainer.default_root_dir=out", cwd=in_tmp
        )
        assert result.returncode == 2 and last_line(result) == f"error: {said}"
    assert list(in_tmp.iterdir()) == []
    # a data option's missing file: the config file and line that set it, and the folder it was looked for in
    (in_tmp / "mine.yaml").write_text("data:\n  init_args:\n    train_path: own.csv\n")
    result = run_main("fit", "--config", CNN, "--config", "mine.yaml", cwd=in_tmp)
    assert last_line(result) == (
        f"error: mine.yaml:3: data.train_path: file 'own.csv' not found (relative to the working folder {in_tmp})"
    )


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"embed_dim": 100, "num_heads": 12}, "model.net.init_args.num_heads: 12 heads do not divide embed_dim 100"),
        ({"img_size": 30}, "model.net.init_args.patch_size: 4 does not divide img_size 30"),
    ],
)  # fmt: skip
def test_a_vit_that_cannot_be_built_names_its_own_options(options, expected):
    from lit_models.vit import VisionTransformer

    with pytest.raises(ConfigError) as caught:
        VisionTransformer(**{"img_size": 32, "patch_size": 4, "in_channels": 3, "num_outputs": 10, **options})
    assert str(caught.value) == expected


def test_a_window_given_to_full_attention_is_said_as_ignored(in_tmp):
    transformer = str(CNN).replace("cnn.yaml", "transformer.yaml")
    with pytest.warns(UserWarning, match=r"model.net.init_args.window: 8, but attention is 'full', which has no "
                                         r"window: the window is ignored"):  # fmt: skip
        ExperimentCLI(
            args=["--config", transformer, *TINY_DATA, *CSV_ONLY, "--model.net.init_args.window=8"], run=False
        )


def test_act_options_given_without_act_are_said_as_ignored():
    import warnings

    from lit_models.act import UniversalOptions

    with pytest.warns(UserWarning, match=r"^model.net.init_args.universal: ponder_cost: 0.5, but act is false \(every "
                      r"position takes every step, no halting unit\): ignored"):  # fmt: skip
        UniversalOptions(act=False, ponder_cost=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        UniversalOptions(act=False)  # nothing given that it ignores
        UniversalOptions(ponder_cost=0.5)


def test_a_picture_named_without_a_format_matplotlib_writes_is_refused_before_the_model_is_built(tmp_path):
    result = run_main("attention", "--ckpt", "c.ckpt", "--text", "a", "--out", "m.bmp", cwd=tmp_path)
    said = last_line(result)
    assert result.returncode == 2 and said.startswith(
        "error: --out m.bmp: name the picture with its format: "
    )
    assert ".png" in said and ".svg" in said and ".pdf" in said and ".pgf" not in said  # pgf needs LaTeX


def test_a_librarys_error_is_said_by_its_first_line_even_when_its_message_is_empty_or_starts_blank():
    # An empty message raised IndexError at some of the places that now use first_line (str(err).splitlines()[0]).
    assert first_line(OSError()) == "OSError"
    assert (
        first_line(ValueError("\n  Unable to load weights \nTraceback follows\n")) == "Unable to load weights"
    )
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10 + "..."
    said = (
        "mmap can only be used with files saved with torch.save(_use_new_zipfile_serialization=True), please"
    )
    assert (
        first_line(RuntimeError(said), limit=60) == "mmap can only be used with files saved with..."
    )  # a word's end


def test_where_set_names_the_file_that_gave_the_value_or_none(tmp_path, monkeypatch):
    """Of two files setting one option, the one holding the refused value (jsonargparse stops at the first bad
    file) or else the last (which the run read); nothing where the command line set the option, or an option
    above or below it, or where an inline config set it; a key path, not a text prefix (``model.lr`` is not
    ``--model.lr_scheduler``)."""
    from experiments.configs import where_set

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("trainer:\n  max_epochs: abc\n")
    (tmp_path / "b.yaml").write_text("seed_everything: 3\ntrainer:\n  max_epochs: 5\n")
    files = ["--config", "a.yaml", "--config", "b.yaml"]
    assert where_set("trainer.max_epochs: Expected a int. Got value: abc", files) == "a.yaml:2: "
    assert where_set("trainer.max_epochs: 5 is too many", files) == "b.yaml:3: "
    assert where_set("trainer.max_epochs: 5 is too many", [*files, "--trainer.max_epochs=5"]) == ""
    assert where_set("trainer.max_epochs: 5 is too many", [*files, "--trainer", "x.yaml"]) == ""
    assert where_set("seed_everything: 3 is odd", [*files, "--seed_everything", "3"]) == ""
    assert where_set("ckpt_path: last.ckpt is at epoch 3", [*files, "--ckpt_path", "last.ckpt"]) == ""
    assert (
        where_set("trainer.max_epochs: 5 is too many", [*files, "--config", "trainer: {max_epochs: 5}\n"])
        == ""
    )
    (tmp_path / "c.yaml").write_text("model:\n  init_args:\n    lr: 1\n")
    assert (
        where_set("model.lr: Option 'lr' is odd", ["--config", "c.yaml", "--model.lr_scheduler=x"])
        == "c.yaml:3: "
    )


def test_a_data_path_under_home_given_quoted_is_expanded(in_tmp, monkeypatch):
    """``--data.train_path=~/x.txt`` (no shell expands it, nor a YAML file): the data's files are looked for in
    the home folder, as the run folder's ``~`` is, not in a folder named ``~`` here."""
    monkeypatch.setenv("HOME", str(in_tmp / "home"))
    (in_tmp / "home").mkdir()
    result = run_main(
        "fit", "--config", CNN, "--data.train_path=~/x.txt", "--trainer.max_steps=1", cwd=in_tmp
    )
    assert last_line(result) == f"error: data.train_path: file '{in_tmp / 'home' / 'x.txt'}' not found"
    (in_tmp / "home" / "x.txt").write_text("".join(f"{'ACGT' * 5} {i % 3}.5\n" for i in range(40)))
    result = run_main("fit", "--config", CNN, "--data.train_path=~/x.txt", "--trainer.max_steps=1",
                      "--trainer.logger=false", "--data.batch_size=8", cwd=in_tmp)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "options, said",
    [
        (["--data.img_size=2"], "data.img_size: 2 is below 6, the least MnistCNN reads"),
        (["--data.std=[0]"], "data.std: [0.0]: every value must be above 0"),
        (["--data.mean=[0.5,0.5]"], "data.mean: [0.5, 0.5] has 2 values for 1 channels"),
        (["--data.augment=true", "--data.auto_augment=randaugmnt"],
         "data.auto_augment: 'randaugmnt': not a policy timm knows (timm's policies: e.g. rand-m9-mstd0.5"),
        (["--data.mixup_alpha=-1"], "data.mixup_alpha: -1.0 is below 0 (0 leaves it out)"),
        (["--data.scale=[0.9,0.1]"], "data.scale: [0.9, 0.1] is not an area range [low, high] within (0, 1]"),
        (["--trainer.callbacks+=experiments.attention.AttentionMaps", "--trainer.callbacks.texts=[a]"],
         "trainer.callbacks: AttentionMaps draws a text model's attention over fixed texts; MnistCNN on "
         "ImageDataModule has none to draw that way: leave it out"),
    ],
)  # fmt: skip
def test_image_values_torch_or_timm_would_refuse_mid_run_are_one_line_first(tmp_path, options, said):
    """Each was a traceback from the first batch or validation (a convolution larger than the image, a zero std,
    a mean per channel of another count, timm's assertion on a policy), or silently off (a negative mixup alpha),
    with the run folder and W&B run made: now one line before anything is written."""
    result = run_main(
        "fit", *image_args(tmp_path, "mnist_cnn.yaml"), *options, "--trainer.max_steps=1", cwd=tmp_path
    )
    assert result.returncode == 2 and last_line(result).startswith(f"error: {said}"), result.stderr[-1500:]
    assert not (tmp_path / "logs").exists()


def test_an_image_folder_of_one_class_and_an_unknown_timm_model_are_named(tmp_path):
    from image_data import write_folder

    write_folder(tmp_path / "one", classes=("cat",))
    one = run_main("fit", "--config", str(ROOT / "experiments" / "vision" / "mnist_cnn.yaml"), "--data.source=folder",
                   f"--data.train_path={tmp_path / 'one'}", cwd=tmp_path)  # fmt: skip
    assert last_line(one) == (
        f"error: data.train_path: {tmp_path / 'one'}: one class folder (cat); a classifier needs 2 or more (one "
        "subfolder per class)"
    )
    write_folder(tmp_path / "two")
    timm = run_main("fit", "--config", str(ROOT / "experiments" / "vision" / "efficientnet_lite0.yaml"),
                    "--data.source=folder", f"--data.train_path={tmp_path / 'two'}",
                    "--model.net.init_args.name=efficientnet_lite9", cwd=tmp_path)  # fmt: skip
    assert last_line(timm).startswith(
        "error: model.net.init_args.name: 'efficientnet_lite9' is not a timm model (did you mean efficientnet_lite"
    )
    hub = run_main("fit", "--config", str(ROOT / "experiments" / "vision" / "efficientnet_lite0.yaml"),
                   "--data.source=folder", f"--data.train_path={tmp_path / 'two'}", "--model.net.init_args.weights_file=",
                   "--model.net.init_args.pretrained=true", cwd=tmp_path)  # fmt: skip
    assert last_line(hub).startswith(
        "error: model.net.init_args.pretrained: efficientnet_lite0's pretrained weights could not be fetched from the "
        "Hugging Face Hub ("
    ) and last_line(hub).endswith(
        "without a connection give a local model.net.init_args.weights_file, or pretrained: false"
    )
    # a timm ViT built for the data's size: a size its patches do not divide drops pixels without a word
    vit = run_main("fit", "--config", str(ROOT / "experiments" / "vision" / "efficientnet_lite0.yaml"),
                   "--data.source=folder", f"--data.train_path={tmp_path / 'two'}", "--model.net.init_args.weights_file=",
                   "--model.net.init_args.name=vit_tiny_patch16_224", "--data.img_size=30", cwd=tmp_path)  # fmt: skip
    assert last_line(vit) == (
        "error: data.img_size: 30 is not a multiple of vit_tiny_patch16_224's patch size 16: the last 14 pixels of "
        "each side would not be read; give a multiple (e.g. 16)"
    )


def test_a_size_linked_from_the_data_given_by_hand_is_said_as_not_used(in_tmp):
    """jsonargparse puts the data's value over a linked size the user typed (5 classes where the data has 3),
    without a word: said, with the file and line that gave it."""
    with pytest.warns(UserWarning, match=r"^model.net.num_outputs: the value given is not used: it is linked from "
                                         r"the data \(data.num_outputs\); leave it out$"):  # fmt: skip
        _cli("--model.net.init_args.num_outputs=5")
    (in_tmp / "mine.yaml").write_text(
        "model:\n  init_args:\n    net:\n      init_args:\n        in_channels: 7\n"
    )
    with pytest.warns(UserWarning, match=r"^mine.yaml:5: model.net.in_channels: the value given is not used"):
        _cli("--config", "mine.yaml")


def test_held_out_shares_that_leave_no_training_data_name_the_file_that_set_them(in_tmp):
    (in_tmp / "mine.yaml").write_text("data:\n  init_args:\n    val_fraction: 0.6\n    test_fraction: 0.6\n")
    result = run_main("fit", "--config", CNN, "--config", "mine.yaml", *TINY_DATA, cwd=in_tmp)
    assert last_line(result) == (
        "error: mine.yaml:3: data.val_fraction: 0.6, with data.test_fraction 0.6, leaves no training data (their sum "
        "must stay below 1)"
    )


def test_an_option_under_the_other_families_name_is_pointed_to_its_name_here(in_tmp):
    """Trial 24: ``activation`` on the GPT suggested 'attention'; the GPT's word for it is ``mlp``."""
    (in_tmp / "g.yaml").write_text(
        "model:\n  net:\n    class_path: lit_models.GPT\n    init_args: {n_layer: 2, activation: swiglu}\n"
    )
    result = run_main("fit", "--config", ROOT / "experiments/lm/gpt.yaml", "--config", "g.yaml", "--print_config",
                      cwd=in_tmp)  # fmt: skip
    assert last_line(result) == (
        "error: g.yaml:4: model.net: Option 'activation' is not accepted (did you mean 'mlp'? GPT's name for "
        "activation)"
    )
    result = run_main("fit", "--config", ROOT / "experiments/dna/transformer.yaml", "--model.net.init_args.n_embd",
                      "32", "--print_config", cwd=in_tmp)  # fmt: skip
    assert last_line(result).endswith("(did you mean 'd_model'? TransformerNet's name for n_embd)")


def test_a_null_inside_a_nested_option_on_the_command_line_is_explained_and_0_empties_moe_options(in_tmp):
    """Trial 24: ``--model.net.init_args.moe.capacity_factor null`` could not turn a config's capacity factor off
    (jsonargparse reads the null back as the text 'None'); 0 now means empty for capacity_factor and hidden."""
    from lit_models.moe import MoEOptions

    moe = ROOT / "experiments/dna/moe.yaml"
    result = run_main("fit", "--config", moe, "--model.net.init_args.moe.capacity_factor", "null", "--print_config",
                      cwd=in_tmp)  # fmt: skip
    assert last_line(result) == (
        "error: model.net.moe.capacity_factor: Expected a float; Given value: None (a null given on the command "
        "line for an option inside another is read as the text 'None': write it in a config file; moe's "
        "capacity_factor and hidden take 0 for empty)"
    )
    options = MoEOptions(capacity_factor=0, hidden=0)
    assert options.capacity_factor is None and options.hidden is None  # dropless, the block's width
    with pytest.raises(
        ConfigError, match=r"moe.capacity_factor: -1.5 is not positive \(or empty or 0: dropless\)"
    ):
        MoEOptions(capacity_factor=-1.5)


def test_budget_flops_in_either_spelling_for_compare_and_pointed_to_its_callback_in_fit(in_tmp):
    """Trial 24: ``compare --budget-flops`` was refused as unrecognized (the other commands take either spelling),
    and ``fit --budget_flops`` was a bare "unrecognized arguments"."""
    from experiments.compare import main as compare

    (in_tmp / "cmp.yaml").write_text(f"name: t\nseeds: 1\nout: out\nmodels:\n  CNN: {CNN}\n")
    with pytest.raises(
        ConfigError, match=r"^--trainer.max_steps: --budget_flops 1e\+10 sets each row's steps"
    ):
        compare(
            ["--config", "cmp.yaml", "--budget-flops", "1e10", "--trainer.max_steps", "2"]
        )  # read, then refused
    assert not (in_tmp / "out").exists()
    result = run_main("fit", "--config", CNN, "--budget_flops", "1e10", "--print_config", cwd=in_tmp)
    assert last_line(result) == (
        "error: unrecognized arguments: --budget_flops 1e10 (compare's option; a single run takes the budget as a "
        "callback: --trainer.callbacks+ experiments.callbacks.FlopsBudget --trainer.callbacks.flops N)"
    )


def test_a_null_for_an_option_of_moe_or_universal_that_takes_no_null_is_one_line(in_tmp):
    """Found after trial 24: ``moe: {experts: null}`` in a YAML file was a ValueError's traceback (the dataclass
    compared None with 1)."""
    (in_tmp / "n.yaml").write_text("model:\n  net:\n    init_args:\n      moe: {experts: null}\n")
    result = run_main("fit", "--config", ROOT / "experiments/dna/moe.yaml", "--config", "n.yaml", *TINY_DATA,
                      *CSV_ONLY, "--trainer.max_steps=1", cwd=in_tmp)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == (
        "error: n.yaml:4: model.net.init_args.moe.experts: null where it takes int (leave it out for its default, 8)"
    )
    from lit_models.act import UniversalOptions

    with pytest.raises(ConfigError, match=r"universal.ponder_cost: null where it takes float \(leave it out for its "
                       r"default, 0.01\)"):  # fmt: skip
        UniversalOptions(ponder_cost=None)


def test_a_validation_interval_past_an_epoch_is_one_line_before_anything_is_written(in_tmp):
    """Trial 26: Lightning refused it with a traceback after the run folder and a W&B run had been made."""
    result = run_main("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.val_check_interval=5",
                      "--trainer.max_steps=8", cwd=in_tmp)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == (
        "error: trainer.val_check_interval: 5 batches, but an epoch here holds 4: give at most 4, a fraction of an "
        "epoch (0.5), or trainer.check_val_every_n_epoch null to count batches across epochs"
    )
    assert not (in_tmp / "lightning_logs").exists()
    ok = run_main("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.val_check_interval=5",
                  "--trainer.check_val_every_n_epoch=null", "--trainer.max_steps=6", cwd=in_tmp)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    # without validation Lightning takes any interval: so does the check (the reviewer's case, a comparison's
    # shared limit_val_batches 0 newly refused by compare's check)
    _cli("--trainer.val_check_interval=5", "--trainer.limit_val_batches=0").check_data_first("fit")


@pytest.mark.parametrize("threshold", [1.5, 0.0, -0.2])
def test_a_confidence_threshold_no_probability_can_meet_is_refused(threshold):
    """Trial 29: 1.5 answered no prediction, and selective accuracy was NaN at every validation."""
    from lit_models import DilatedCNN, PredictionTask

    with pytest.raises(ValueError, match=rf"^model.confidence_threshold: {threshold} is outside \(0, 1\]"):
        PredictionTask(DilatedCNN(4, 3, channels=4, num_blocks=1), task="classification", num_outputs=3,
                       confidence_threshold=threshold)  # fmt: skip
    task = PredictionTask(DilatedCNN(4, 3, channels=4, num_blocks=1), task="classification", num_outputs=3,
                          confidence_threshold=1.0)  # fmt: skip
    assert "selective_acc" in task.val_metrics
