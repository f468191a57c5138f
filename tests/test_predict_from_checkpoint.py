"""``predict`` and ``test`` from a checkpoint alone: the data's state (class names, tokenizer, input size and
statistics, label statistics) travels in every checkpoint, and ``data.checkpoint`` (set by ``predict`` and ``test``
with ``--ckpt_path``) reads only the file to predict or test. Parity: the same sizes and the same batches as the
data read from its training files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY_DATA, run_main
from image_data import write_folder
from text_data import reviews, text_args, write_csv

from archbench.errors import ConfigError, DataError
from datamodules.dna import DNADataModule
from datamodules.images import ImageDataModule
from datamodules.text import TextClassificationDataModule
from experiments.cli import ExperimentCLI

DNA = ROOT / "experiments" / "dna"


def saved(data, path) -> str:
    """A checkpoint holding ``data``'s state as Lightning saves it (under the class's name), no weights."""
    torch.save({"state_dict": {}, type(data).__qualname__: data.state_dict()}, path)
    return str(path)


def batches(data, split: str = "predict") -> list[dict]:
    loader = getattr(data, f"{split}_dataloader")()
    return [dict(b) if isinstance(b, dict) else {"x": b[0], "y": b[1]} for b in loader]


def assert_same_batches(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(
                a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key
            )  # unlabelled: NaN


def test_dna_predicts_from_a_checkpoint_as_from_its_training_file(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train.txt"
    train.write_text(
        "".join(f"{''.join(rng.choice(list('ACGT'), 30 + i % 9))} {rng.normal():.3f}\n" for i in range(60))
    )
    new = tmp_path / "new.txt"
    # the second is longer than any training sequence
    new.write_text("ACGTACGTAC\nGGGGCCCCAATTGGGGCCCCAATTGGGGCCCCAATTGGGGCCCCAATT\n")
    first = DNADataModule(train_path=str(train), predict_path=str(new), batch_size=4)
    first.setup("predict")
    ckpt = saved(first, tmp_path / "model.ckpt")
    train.unlink()
    second = DNADataModule(train_path=str(train), predict_path=str(new), checkpoint=ckpt, batch_size=4)
    second.setup("predict")
    for size in ("num_outputs", "target_mean", "target_std", "seq_len"):
        assert getattr(second, size) == getattr(first, size), size
    # positions for the longest sequence to predict, as when it was read with the training data
    assert second.seq_len == 48
    assert_same_batches(batches(second), batches(first))


def test_text_predicts_from_a_checkpoint_as_from_its_training_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", reviews(80))
    new = write_csv(
        tmp_path / "new.csv", [("a great film", 1), ("the plot was dull and " * 40, 2)], ("text", "id")
    )
    options = {"train_path": str(train), "predict_path": str(new), "tokenizer": "bpe", "tokenizer_vocab_size": 260,
               "max_length": 32, "labels": ["rotten", "fresh"], "batch_size": 4}  # fmt: skip
    first = TextClassificationDataModule(**options, cache_dir=str(tmp_path / "cache"))
    first.setup("predict")
    ckpt = saved(first, tmp_path / "model.ckpt")
    train.unlink()
    # another machine: no cache, no training file, and a config that says another length
    second = TextClassificationDataModule(**{**options, "max_length": 64}, checkpoint=ckpt,
                                          cache_dir=str(tmp_path / "elsewhere"))  # fmt: skip
    second.setup("predict")
    for size in ("labels", "vocab_size", "num_outputs", "pad_id", "seq_len"):
        assert getattr(second, size) == getattr(first, size), size
    assert second.tokenizer_json() == first.tokenizer_json()
    assert_same_batches(batches(second), batches(first))
    second.load_state_dict(first.state_dict())  # what Lightning checks on restoring: the same state


def test_a_prediction_from_a_checkpoint_has_a_cache_of_its_own(tmp_path):
    """The tokenized cache of a predict from a checkpoint holds the predict split alone: a later test or fit of
    the same data (same files, tokenizer and length) must not open it and miss its splits."""
    train = write_csv(tmp_path / "train.csv", reviews(60))
    new = write_csv(tmp_path / "new.csv", [("a great film", 1)], ("text", "id"))
    options = {"train_path": str(train), "predict_path": str(new), "tokenizer": "bpe", "tokenizer_vocab_size": 260,
               "max_length": 32, "labels": ["rotten", "fresh"], "batch_size": 4,
               "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    trained = TextClassificationDataModule(**options)
    trained.setup("fit")
    ckpt = saved(trained, tmp_path / "model.ckpt")
    shutil.rmtree(tmp_path / "cache")  # the predict comes first
    alone = TextClassificationDataModule(**options, checkpoint=ckpt)
    alone.setup("predict")
    assert set(alone.splits) == {"predict"}
    again = TextClassificationDataModule(**options)
    again.setup("fit")
    assert set(again.splits) == {"train", "val", "test", "predict"}


def _images_alone(options: dict, stage: str, tmp_path) -> tuple[ImageDataModule, ImageDataModule]:
    """The images read with their training folder, then from its checkpoint with that folder gone."""
    first = ImageDataModule(**options)
    first.setup(stage)
    ckpt = saved(first, tmp_path / "model.ckpt")
    shutil.rmtree(tmp_path / "train")
    second = ImageDataModule(**options, checkpoint=ckpt)
    second.setup(stage)
    return first, second


def test_images_predict_from_a_checkpoint_as_from_their_training_folder(tmp_path):
    write_folder(tmp_path / "train", per_class=5, size=12)
    write_folder(tmp_path / "new", classes=("unsorted",), per_class=3, size=20, seed=1)
    options = {"source": "folder", "train_path": str(tmp_path / "train"), "predict_path": str(tmp_path / "new"),
               "batch_size": 2}  # fmt: skip
    first, second = _images_alone(options, "predict", tmp_path)
    for size in ("labels", "in_channels", "img_size", "num_outputs", "data_config"):
        assert getattr(second, size) == getattr(first, size), size
    assert_same_batches(batches(second), batches(first))


def test_each_modality_tests_a_file_of_its_own_from_a_checkpoint_as_from_its_training_files(tmp_path):
    """``data.checkpoint`` with a ``test_path``: the same test batches as the data read with its training files,
    which are gone; a DNA test file with a class the checkpoint's model does not have is refused by name."""
    rng = np.random.default_rng(0)
    dna = {name: tmp_path / f"{name}.txt" for name in ("train", "test")}
    for name, n in (("train", 60), ("test", 12)):
        dna[name].write_text("".join(f"{''.join(rng.choice(list('ACGT'), 30))} {i % 3}\n" for i in range(n)))
    texts = {
        "train": write_csv(tmp_path / "train.csv", reviews(80)),
        "test": write_csv(tmp_path / "test.csv", reviews(20, seed=1)),
    }
    write_folder(tmp_path / "images" / "train", per_class=5, size=12)
    write_folder(tmp_path / "images" / "test", classes=("dog",), per_class=3, size=12, seed=1)
    images = {name: tmp_path / "images" / name for name in ("train", "test")}
    cases = [
        (DNADataModule, dna, {"task": "classification", "batch_size": 4}),
        (TextClassificationDataModule, texts, {"tokenizer": "bpe", "tokenizer_vocab_size": 260, "batch_size": 4,
                                               "cache_dir": str(tmp_path / "cache")}),
        (ImageDataModule, images, {"source": "folder", "batch_size": 2}),
    ]  # fmt: skip
    for cls, files, options in cases:
        options = {**options, "train_path": str(files["train"]), "test_path": str(files["test"])}
        first = cls(**options)
        first.setup("test")
        ckpt = saved(first, tmp_path / f"{cls.__name__}.ckpt")
        moved = files["train"].rename(files["train"].with_name("gone"))
        second = cls(**{**options, "cache_dir": str(tmp_path / "elsewhere")} if "cache_dir" in options else options,
                     checkpoint=ckpt)  # fmt: skip
        second.setup("test")
        assert set(second.splits) == {"test"}, cls.__name__
        assert_same_batches(batches(second, "test"), batches(first, "test"))
        second.load_state_dict(first.state_dict())
        moved.rename(files["train"])
    # restoring a checkpoint of other class names into data read from its files (fit --ckpt_path) is refused
    trained = ImageDataModule(source="folder", train_path=str(images["train"]), test_path=str(images["test"]))
    with pytest.raises(
        DataError, match=r"the checkpoint's classes \['apple', 'banana'\] differ from this data's"
    ):
        trained.load_state_dict({"labels": ["apple", "banana"]})
    dna["test"].write_text("ACGT" * 8 + " 1\n\n" + "ACGT" * 8 + " 3\n")  # named at its line (trial 16)
    with pytest.raises(
        DataError, match=r"test.txt:3: class id 3 is outside the checkpoint's 3 classes \(0..2\)"
    ):
        DNADataModule(
            test_path=str(dna["test"]), task="classification", checkpoint=str(tmp_path / "DNADataModule.ckpt")
        ).setup("test")


def test_images_from_a_checkpoint_keep_the_runs_classes_and_test_subset(tmp_path):
    """A run that kept some classes (data.labels) and tests a subset (data.test_size): the test folder read from
    its checkpoint gives the same batches as read with the training folders (its other classes dropped, the same
    seeded subset), where it used to refuse the dropped class and test the whole folder."""
    write_folder(tmp_path / "train", classes=("bird", "cat", "dog"), per_class=4, size=12)
    write_folder(tmp_path / "test", classes=("bird", "cat", "dog"), per_class=3, size=12, seed=1)
    options = {"source": "folder", "train_path": str(tmp_path / "train"), "test_path": str(tmp_path / "test"),
               "labels": ["dog", "cat"], "test_size": 4, "batch_size": 2}  # fmt: skip
    first, second = _images_alone(options, "test", tmp_path)
    assert second.labels == ["dog", "cat"] and len(second.splits["test"]) == 4
    assert_same_batches(batches(second, "test"), batches(first, "test"))


def test_a_checkpoint_without_the_datas_state_or_without_a_file_to_predict_is_refused_by_name(tmp_path):
    train = write_csv(tmp_path / "train.csv", reviews(40))
    old = tmp_path / "old.ckpt"  # as an older version saved images' state: labels, no input size
    torch.save({"state_dict": {}, "ImageDataModule": {"labels": ["cat", "dog"]}}, old)
    with pytest.raises(DataError) as err:
        ImageDataModule(source="folder", train_path="x", predict_path=str(tmp_path), checkpoint=str(old))
    assert str(err.value) == (
        f"data.checkpoint: {old} holds no ImageDataModule state (labels, data_config): it was trained on other "
        "data or saved by an older version; leave data.checkpoint empty to read the training files"
    )
    with pytest.raises(DataError, match=r"^data.checkpoint: .* replaces the training data for files of their own: "
                                        "give data.predict_path or data.test_path"):  # fmt: skip
        TextClassificationDataModule(train_path=str(train), checkpoint=str(old))
    with pytest.raises(ConfigError, match=r"^data.checkpoint: file '.*missing.ckpt' not found \('.*' holds "):
        DNADataModule(predict_path=str(train), checkpoint=str(tmp_path / "missing.ckpt"))


def test_predict_needs_no_training_file_and_says_the_same(tmp_path, monkeypatch):
    """The command line: a run's checkpoint predicts a new file after its training files (and the tokenized
    cache) are gone, with the predictions it made while they were there."""
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "cache"))
    args = [
        *text_args(tmp_path, ROOT / "experiments" / "text" / "lstm.yaml"),
        "--model.net.init_args.hidden_size=8",
    ]
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=2"])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    new = write_csv(tmp_path / "new.csv", [("r1", "a great film"), ("r2", "dull")], ("id", "text"))
    predict = ["predict", *args, f"--data.predict_path={new}", f"--ckpt_path={ckpt}"]
    ExperimentCLI(args=predict)
    (found,) = (tmp_path / "logs").rglob("predictions.tsv")
    first = found.read_text()
    found.unlink()
    # data.checkpoint is predict's, set from its --ckpt_path: a config that carries one (a predict run's) is
    # refused by the other commands, and by a predict with another checkpoint, rather than read the wrong data
    saved = yaml.safe_load((found.parent / "config.yaml").read_text())["data"]["init_args"]["checkpoint"]
    assert saved == str(ckpt)
    with pytest.raises(
        ConfigError, match=r"^data.checkpoint: .*: only predict and test take the data from a checkpoint"
    ):
        ExperimentCLI(args=[*args, f"--data.checkpoint={ckpt}", f"--data.predict_path={new}"], run=False)
    other = ckpt.parent / "other.ckpt"
    shutil.copy(ckpt, other)
    with pytest.raises(
        ConfigError, match=rf"^data.checkpoint: {ckpt} is not --ckpt_path {other}: predict takes"
    ):
        ExperimentCLI(args=[*predict[:-1], f"--ckpt_path={other}", f"--data.checkpoint={ckpt}"])
    other.unlink()
    shutil.rmtree(tmp_path / "d")  # train, val and test files
    shutil.rmtree(tmp_path / "cache")
    ExperimentCLI(args=predict)
    (found,) = (tmp_path / "logs").rglob("predictions.tsv")
    assert found.read_text() == first and first.count("\n") == 3
    # test reads its own file alone: without it, that file is named, not a traceback
    result = run_main("test", *args, f"--ckpt_path={ckpt}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "test.csv" in result.stderr.strip().splitlines()[-1]


def test_a_refused_checkpoint_leaves_no_run_folder(in_tmp):
    """A checkpoint that does not fit the model is refused after the loggers are built, before any writes: the
    default_root_dir (the W&B logger's folder too) is not made."""
    (in_tmp / "new.txt").write_text("ACGTACGTAC\n")
    args = ["--config", str(DNA / "transformer.yaml"), *TINY_DATA, "--model.net.init_args.d_model=16",
            "--model.net.init_args.num_layers=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=1", "--trainer.logger=false"])
    ckpt = next(in_tmp.rglob("last.ckpt"))
    result = run_main("predict", *args, "--data.predict_path=new.txt", f"--ckpt_path={ckpt}",
                      "--trainer.default_root_dir=elsewhere", "--model.net.init_args.dim_feedforward=64",
                      cwd=in_tmp)  # fmt: skip
    assert result.returncode == 2 and "does not fit the model" in result.stderr.strip().splitlines()[-1]
    assert not (in_tmp / "elsewhere").exists()


def test_longer_sequences_than_learned_positions_fit_are_said_as_such_not_as_a_wrong_config(in_tmp):
    """The config is the run's own: the file to predict is what does not fit a net with learned positions. The
    same file predicts with sinusoidal positions (built for its length; their table is not in the checkpoint)."""
    (in_tmp / "new.txt").write_text("ACGT" * 20 + "\n")  # 80 bp, the training data's 60
    args = ["--config", str(DNA / "transformer.yaml"), *TINY_DATA, "--model.net.init_args.d_model=16",
            "--model.net.init_args.num_layers=1", "--trainer.enable_progress_bar=false", "--trainer.logger=false"]  # fmt: skip
    for positions in ("learned", "sinusoidal"):
        run = [
            *args,
            f"--model.net.init_args.positions={positions}",
            f"--trainer.default_root_dir={positions}",
        ]
        ExperimentCLI(args=["fit", *run, "--trainer.max_steps=1"])
        ckpt = next((in_tmp / positions).rglob("last.ckpt"))
        result = run_main("predict", *run, "--data.predict_path=new.txt", f"--ckpt_path={ckpt}", cwd=in_tmp)
        if positions == "sinusoidal":
            assert result.returncode == 0, result.stderr[-2000:]
            continue
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {ckpt} does not fit the model that this config and data build (1 tensor(s) of another shape: "
            "net.pos is [12, 16] there, [16, 16] here): new.txt: sequences up to 80 bp, longer than the model's training data (60 bp), "
            "and a net whose weights depend on the length (learned positions, flatten pooling) fits only the lengths "
            "it trained on; cut the sequences to that length, or train a net with positions sinusoidal or rotary and "
            "another pooling"
        )
        # another net as well (wider): said as another config, not put down to the length
        wider = run_main("predict", *run, "--data.predict_path=new.txt", f"--ckpt_path={ckpt}",
                         "--model.net.init_args.d_model=32", cwd=in_tmp)  # fmt: skip
        assert (
            wider.stderr.strip()
            .splitlines()[-1]
            .endswith(
                "it was trained with another vocabulary, data or net options; give the config it was trained with"
            )
        )  # the same data: nothing said of it
        # a regression checkpoint given classification data: the task that differs is said (trial 22)
        other = run_main("predict", *run, "--data.predict_path=new.txt", f"--ckpt_path={ckpt}",
                         "--data.task=classification", cwd=in_tmp)  # fmt: skip
        assert (
            "the checkpoint was trained on other data (data.task 'regression', this run's 'classification')"
            in (other.stderr.strip().splitlines()[-1])
        ), other.stderr[-2000:]


def test_a_test_file_of_its_own_is_read_with_the_checkpoints_tokenizer(tmp_path, monkeypatch, capsys):
    """A run that held its test split out of the training file, tested later on a file of its own: that file
    changes the training split (nothing is held out now), so a BPE trained again differed and the checkpoint was
    refused; test now reads the file with the checkpoint's tokenizer and class names."""
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "cache"))
    model = ROOT / "experiments" / "text" / "lstm.yaml"
    args = [a for a in text_args(tmp_path, model, tokenizer="bpe") if not a.startswith("--data.test_path")]
    args += ["--data.test_path=null"]  # held out of the training file
    # a made-up word in every row: the merges a BPE learns depend on which rows the split holds out
    rng = np.random.default_rng(1)
    rows = [(f"{text} {''.join(rng.choice(list('qxzjkv'), 6))}", label) for text, label in reviews(80)]
    args += [
        f"--data.train_path={write_csv(tmp_path / 'train.csv', rows)}",
        "--data.tokenizer_vocab_size=1000",
        "--model.net.init_args.hidden_size=8",
    ]
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=2"])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    new = write_csv(tmp_path / "new.csv", reviews(30, seed=2))
    cli = ExperimentCLI(args=["test", *args, f"--data.test_path={new}", f"--ckpt_path={ckpt}"])
    assert (
        f"test: the data as the model was trained (class names, tokenizer, sizes, statistics) from {ckpt}"
        in (capsys.readouterr().out)
    )
    assert set(cli.datamodule.splits) == {"test"} and len(cli.datamodule.splits["test"]) == 30
    assert "test/acc" in cli.trainer.callback_metrics


def test_a_checkpoint_tested_under_another_tokenizer_is_said_so_not_as_the_embeddings_shape(
    tmp_path, monkeypatch
):
    """A test split held out of the training file is read with the data's own tokenizer: another one than the
    checkpoint's is named as such, before the net's weights are compared (whose first difference is the
    embedding's row count, which says nothing of why)."""
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "cache"))
    args = [*text_args(tmp_path, ROOT / "experiments" / "text" / "lstm.yaml"), "--data.test_path=null",
            "--model.net.init_args.hidden_size=8"]  # fmt: skip
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=1"])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    with pytest.raises(DataError, match=r"^the checkpoint's tokenizer differs from this data's \(data.tokenizer: "
                                        r"'bpe', max_length \d+\)"):  # fmt: skip
        ExperimentCLI(args=["test", *args, "--data.tokenizer=bpe", "--data.tokenizer_vocab_size=260",
                            f"--ckpt_path={ckpt}"])  # fmt: skip
