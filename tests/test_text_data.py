"""Text data: files and labels, seeded splits and subsets, the token cache, trained tokenizers, bad input
named by file, row, column and value."""

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_main
from text_data import TEXT, reviews, write_csv, write_jsonl

from archbench.errors import DataError
from datamodules.text import TextClassificationDataModule


def data(tmp_path, **kwargs) -> TextClassificationDataModule:
    kwargs.setdefault(
        "tokenizer_vocab_size", 260 if kwargs.get("tokenizer", "bpe") == "bpe" else 100
    )  # BPE: its bytes + 4
    kwargs.setdefault("batch_size", 8)
    return TextClassificationDataModule(cache_dir=str(tmp_path / "cache"), **kwargs)


@pytest.fixture
def csv_files(tmp_path):
    rows = reviews(90)
    return {
        "train_path": str(write_csv(tmp_path / "train.csv", rows[:60])),
        "val_path": str(write_csv(tmp_path / "val.csv", rows[60:75])),
        "test_path": str(write_csv(tmp_path / "test.csv", rows[75:])),
    }


def test_string_labels_map_to_ids_in_declared_order_and_batches_pad_to_their_longest(tmp_path, csv_files):
    dm = data(tmp_path, **csv_files, labels=["rotten", "fresh"])
    dm.prepare_data()
    dm.setup()
    assert dm.num_outputs == 2 and dm.labels == ["rotten", "fresh"]
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 60, "val": 15, "test": 15}
    # Row 0 of train.csv is "fresh" (id 1 here), row 1 "rotten" (id 0).
    assert dm.splits["train"].labels[:2].tolist() == [1, 0]
    batch = next(iter(dm.val_dataloader()))
    x, lengths = batch["x"], batch["lengths"]
    assert x.dtype == torch.long and x.shape[1] == int(lengths.max())
    for row, n in enumerate(lengths.tolist()):
        assert (x[row, n:] == dm.pad_id).all() and (x[row, :n] != dm.pad_id).all()
    # Special tokens around the words, and the words themselves come back from the ids.
    first = dm.tokenizer.decode(x[0, : lengths[0]].tolist())
    assert first.strip() == reviews(90)[60][0]  # byte-level BPE decodes the prefix space too


def test_jsonl_with_integer_labels_and_a_seeded_held_out_split(tmp_path):
    records = [{"review": t, "stars": i % 3} for i, (t, _) in enumerate(reviews(100))]
    path = write_jsonl(tmp_path / "all.jsonl", records)
    split = {"val_fraction": 0.2, "test_fraction": 0.2}
    dm = data(tmp_path, train_path=str(path), text_column="review", label_column="stars", **split)
    dm.setup()
    assert dm.labels == ["0", "1", "2"]
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 60, "val": 20, "test": 20}
    again = data(
        tmp_path / "other", train_path=str(path), text_column="review", label_column="stars", **split
    )
    again.setup()
    for split in sizes:  # the same seed gives the same split
        np.testing.assert_array_equal(again.splits[split].values, dm.splits[split].values)
    # integer labels keep their value as class id
    original = np.array([r["stars"] for r in records])
    assert set(dm.splits["val"].labels) <= {0, 1, 2}
    assert np.bincount(dm.splits["train"].labels, minlength=3).sum() == 60
    assert sorted(np.concatenate([dm.splits[s].labels for s in sizes])) == sorted(original)
    # the label set given as integers, from the command line as a user writes it: that order, by value
    from experiments.cli import ExperimentCLI

    cli_args = ["--config", str(TEXT / "rotten_tomatoes.yaml"), "--config", str(TEXT / "lstm.yaml"),
                f"--data.train_path={path}", "--data.val_path=null", "--data.test_path=null",
                "--data.text_column=review", "--data.label_column=stars", "--data.labels=[2, 0, 1]"]  # fmt: skip
    parsed = ExperimentCLI(args=cli_args, run=False, parse_only=True).config.data.init_args
    assert parsed.labels == [2, 0, 1]
    ordered = data(tmp_path / "ordered", train_path=str(path), text_column="review", label_column="stars",
                   labels=parsed.labels, val_fraction=0.2, test_fraction=0.2)  # fmt: skip
    ordered.setup()
    assert ordered.labels == ["2", "0", "1"]
    ids = np.concatenate([ordered.splits[s].labels for s in sizes])
    assert np.bincount(ids, minlength=3).tolist() == [int((original == v).sum()) for v in (2, 0, 1)]


def test_subset_sizes(tmp_path, csv_files):
    dm = data(tmp_path, **csv_files, train_size=20, test_size=5)
    dm.setup()
    assert len(dm.splits["train"]) == 20 and len(dm.splits["test"]) == 5 and len(dm.splits["val"]) == 15


def test_second_setup_reads_the_cache_and_never_calls_the_tokenizer(tmp_path, csv_files, monkeypatch):
    first = data(tmp_path, **csv_files)
    first.prepare_data()
    first.setup()
    assert first.tokenizer_calls >= 90
    second = data(tmp_path, **csv_files)
    import tokenizers

    def forbidden(*args, **kwargs):
        raise AssertionError("the tokenizer was called on a cached dataset")

    monkeypatch.setattr(tokenizers.Tokenizer, "encode_batch", forbidden)
    second.prepare_data()
    second.setup()
    assert second.tokenizer_calls == 0
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(second.splits[split].values, first.splits[split].values)
    monkeypatch.undo()
    # a file edited in place and given its old time back (cp -p, rsync -a, tar x) is read again (trial 18: the
    # cache keyed on its size and time trained on the old labels)
    train = Path(csv_files["train_path"])
    stat, text, before = train.stat(), train.read_text(), first.cache_path
    edited = text.replace("rotten", "rottex", 1)
    assert len(edited) == len(text) and edited != text
    train.write_text(edited)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = data(tmp_path, **csv_files)
    assert changed.cache_path != before
    with pytest.warns(UserWarning):  # "rottex" beside "rotten": a typo? (said, and read as a class)
        changed.setup()
    # the edited file is what is read (datasets' own cache of the file, keyed on its path and time, gave the old)
    assert changed.labels == ["fresh", "rotten", "rottex"]
    train.write_text(text)
    # another max_length is another cache entry
    shorter = data(tmp_path, **csv_files, max_length=6)
    shorter.setup()
    assert shorter.cache_path != first.cache_path and shorter.splits["train"].lengths.max() == 6


def test_run_files_hold_the_label_mapping_and_the_tokenizer(tmp_path, csv_files):
    from tokenizers import Tokenizer

    dm = data(tmp_path, **csv_files)
    dm.setup()
    dm.save_run_files(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["fresh", "rotten"]
    saved = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))
    assert saved.encode("a great film").ids == dm.tokenizer.encode("a great film").ids
    state = dm.state_dict()
    dm.load_state_dict(state)  # its own state is accepted
    other = data(tmp_path / "x", **csv_files, labels=["rotten", "fresh"])
    with pytest.raises(DataError, match="labels"):
        other.load_state_dict(state)


def test_bpe_tokenizer_is_trained_too(tmp_path, csv_files):
    dm = data(tmp_path, **csv_files, tokenizer="bpe", tokenizer_vocab_size=300)
    dm.setup()
    ids = dm.splits["train"].values
    assert 0 < dm.vocab_size <= 300 and ids.max() < dm.vocab_size


@pytest.mark.parametrize(
    "content, kwargs, expected",
    [
        (
            "review,label\ngood film,fresh\n",
            {},
            r"no column 'text' \(data.text_column; columns: 'review', 'label'\)$",
        ),
        (
            "text;label\ngood film;fresh\n",
            {},
            r"columns: 'text;label'\); the header is one column holding ';': is the file separated by ';'\?",
        ),
        (
            "# my reviews, exported\ntext,label\ngood film,fresh\n",
            {},
            r"columns: '# my reviews', ' exported'\)$",
        ),
        (
            "# my reviews exported\ntext,label\ngood film,fresh\n",
            {},
            r"columns: '# my reviews exported'\); is the first line the header \(a title line above it\)\?",
        ),
        ("text,stars\ngood film,fresh\n", {}, r"no column 'label' \(data.label_column;"),
        (  # a misspelt column: the close one
            "sentence,label\ngood film,fresh\n",
            {"text_column": "sentense"},
            r"no column 'sentense' \(data.text_column; columns: 'sentence', 'label'\); did you mean 'sentence'\?$",
        ),
        (
            "text,label\ngood film,fresh\n,rotten\nbad,rotten\n",
            {},
            r"row 2 \(line 3\): column 'text' is empty",
        ),
        ("text,label\ngood,fresh\n   ,rotten\n", {}, r"row 2 \(line 3\): column 'text' is empty"),
        (
            "text,label\ngood,fresh\nbad,rotten\nmeh,so-so\n",
            {"labels": ["fresh", "rotten"]},
            r"row 3 \(line 4\): column 'label' value 'so-so' is not one of the labels \['fresh', 'rotten'\]",
        ),
        ("text,label\ngood,fresh\nbad,\nmeh,rotten\n", {}, r"row 2 \(line 3\): column 'label' is empty"),
        (
            "text,label\ngood,fresh\ntext,label\nbad,rotten\n",
            {},
            r"row 2 \(line 3\): repeats the header \(text, label\): files joined with their headers\?",
        ),
        (
            "text,label\n\ngood,fresh\n  \nbad,\nmeh,rotten\n",
            {},
            r"row 2 \(line 5\): column 'label' is empty",
        ),
        ("text,label\ngood,fresh\nbad,  \nmeh,rotten\n", {}, r"row 2 \(line 3\): column 'label' is empty"),
        (
            "text,score\ngood,0.75\nbad,0.25\nmeh,1.0\n",
            {"label_column": "score"},
            r"row \d \(line \d\): column 'score' holds a number with a fraction \(0\.\d+; 3 distinct values in the "
            r"column\).*score to regress",
        ),
        (  # whole numbers that one row's fraction made floats: that row is named, the others are 0, 1, 2
            "text,label\n" + "".join(f"text {i},{i % 3}\n" for i in range(30)) + "odd,1.5\n",
            {"labels": [0, 1, 2]},
            r"row 31 \(line 32\): column 'label' value 1.5 is not one of the labels \['0', '1', '2'\]",
        ),
        (
            "text,label,note\n" + "".join(f"text {i},{i % 2},note {i}\n" for i in range(3000)),
            {"label_column": "note"},
            r"column 'note' has 3000 distinct values in 3000 rows, too many to be class labels",
        ),
    ],
)
def test_bad_input_names_file_row_column_and_value(tmp_path, content, kwargs, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    dm = data(tmp_path, train_path=str(path), val_fraction=0.0, test_fraction=0.0, **kwargs)
    with pytest.raises(DataError, match=expected) as err:
        dm.prepare_data()
    assert str(path) in str(err.value)
    assert not list((tmp_path / "cache" / "tokenized").glob("*/meta.json"))  # nothing half-written


def test_a_validation_label_never_seen_in_training_is_an_error(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("good", "fresh"), ("bad", "rotten")])
    val = write_csv(tmp_path / "val.csv", [("fine", "fresh"), ("odd", "weird")])
    dm = data(tmp_path, train_path=str(train), val_path=str(val), test_fraction=0.0)
    with pytest.raises(DataError, match=r"val.csv: row 2 \(line 3\): column 'label' value 'weird'"):
        dm.prepare_data()


def test_labels_that_look_like_mistakes_are_said_and_kept(tmp_path):
    """Inferred labels: a typo held by one row among many of another label, and variants of one label (case,
    spaces), each said with where it is; they stay classes (data.labels is how to fix the set)."""
    rows = reviews(40)
    rows[6] = (rows[6][0], "freshh")
    rows[9] = (rows[9][0], "Rotten ")
    train = write_csv(tmp_path / "train.csv", rows)
    held = {s: str(write_csv(tmp_path / f"{s}.csv", reviews(6, seed=1))) for s in ("val_path", "test_path")}
    dm = data(tmp_path, train_path=str(train), **held)
    with pytest.warns(UserWarning) as said:
        assert dm.labels == ["Rotten ", "fresh", "freshh", "rotten"]
    messages = [str(w.message) for w in said]
    assert any(
        "differ only in case or spaces, each its own class: 'Rotten ', 'rotten'" in m for m in messages
    )
    (typo,) = [m for m in messages if "a typo?" in m]
    assert typo.startswith(
        f"{train}: row 10 (line 11): label 'Rotten ' is held by 1 row(s), the most common label by 19"
    )
    assert "(and 1 more such: 'freshh')" in typo
    quiet = data(tmp_path, train_path=str(write_csv(tmp_path / "ok.csv", reviews(40))), **held)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quiet.labels == ["fresh", "rotten"]


def test_texts_cut_at_max_length_are_counted_per_split(tmp_path, csv_files):
    dm = data(tmp_path, **csv_files, max_length=24)
    with pytest.warns(UserWarning) as said:
        dm.setup()
    cut = [str(w.message) for w in said if "data.max_length 24" in str(w.message)]
    from tokenizers import Tokenizer

    whole = Tokenizer.from_str(dm.tokenizer.to_str())
    whole.no_truncation()
    long = sum(len(e.ids) > 24 for e in whole.encode_batch([t for t, _ in reviews(90)[:60]]))
    assert 0 < long < 60
    assert cut and cut[0].startswith(f"data.max_length 24: {long} of 60 train texts")
    again = data(tmp_path, **csv_files, max_length=24)  # from the cache: said again
    with pytest.warns(UserWarning, match=f"data.max_length 24: {long} of 60 train texts"):
        again.setup()


def test_missing_files_unknown_formats_and_hub_names_offline(tmp_path):
    with pytest.raises(DataError, match=r"data.train_path: file '.*nope.csv' not found"):
        _ = data(tmp_path, train_path=str(tmp_path / "nope.csv")).num_outputs
    (tmp_path / "a.xml").write_text("<a/>")
    with pytest.raises(DataError, match=r"unknown format '.xml'"):
        _ = data(tmp_path, train_path=str(tmp_path / "a.xml")).num_outputs
    with pytest.raises(DataError, match=r"data.dataset: 'yelp_review_full' .*offline"):
        _ = data(tmp_path, dataset="yelp_review_full").num_outputs
    with pytest.raises(DataError, match=r"data.tokenizer: 'bert-base-cased' \(a hub name\).*offline"):
        _ = data(
            tmp_path, train_path=write_csv(tmp_path / "t.csv", reviews(4)), tokenizer="bert-base-cased"
        ).vocab_size
    with pytest.raises(DataError, match="either dataset"):
        data(tmp_path)
    with pytest.raises(DataError, match=r"'bpee' \(a hub name\).*Did you mean 'bpe'"):
        _ = data(tmp_path, train_path=write_csv(tmp_path / "t.csv", reviews(4)), tokenizer="bpee").vocab_size
    with pytest.raises(DataError, match="data.label_column: 'text' is also data.text_column"):
        data(tmp_path, train_path=str(tmp_path / "t.csv"), label_column="text")


def test_an_unreachable_hub_means_offline_before_any_hub_library_loads(monkeypatch):
    """No route to the Hub's host: HF_HUB_OFFLINE is set (a hub name then stops at once instead of retrying for
    a minute); a host that answers (a local socket standing in for the Hub), a proxy, or an explicit
    HF_HUB_OFFLINE: left as it is."""
    import os
    import socket

    from experiments.__main__ import hub_offline_when_unreachable

    variables = (
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    )
    for variable in variables:
        monkeypatch.delenv(variable, raising=False)

    def no_route(*args, **kwargs):  # a failed name lookup, without asking this machine's resolver
        raise OSError("Name or service not known")

    with monkeypatch.context() as patched:
        patched.setattr(socket, "create_connection", no_route)
        assert hub_offline_when_unreachable()
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
        patched.setenv("HF_HUB_OFFLINE", "0")  # the user's own choice stays
        assert not hub_offline_when_unreachable() and os.environ["HF_HUB_OFFLINE"] == "0"
        patched.delenv("HF_HUB_OFFLINE")
        patched.delenv("HF_DATASETS_OFFLINE")
        patched.setenv(
            "HTTPS_PROXY", "http://proxy.example:3128"
        )  # reached through a proxy: not ours to judge
        assert not hub_offline_when_unreachable() and "HF_HUB_OFFLINE" not in os.environ
    for variable in variables:
        monkeypatch.delenv(variable, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:  # the real connect, to a host that answers
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not hub_offline_when_unreachable() and "HF_HUB_OFFLINE" not in os.environ


def test_cli_reports_bad_text_data_in_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood,fresh\n,rotten\n")
    result = run_main(
        "fit",
        "--config",
        str(TEXT / "rotten_tomatoes.yaml"),
        "--config",
        str(TEXT / "lstm.yaml"),
        f"--data.train_path={bad}",
        "--data.val_path=null",
        "--data.test_path=null",
        "--data.tokenizer=wordpiece",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: {bad}: row 2 (line 3): column 'text' is empty (1 empty text in this split)"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_an_empty_text_in_a_held_out_part_names_its_file_row(tmp_path):
    """Held-out parts are subsets of the training file: the row named is the file's, not the subset's."""
    rows = [(f"text number {i} is fine", "pos" if i % 2 else "neg") for i in range(40)]
    rows[30] = ("   ", "pos")
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    for val, test in ((0.0, 0.25), (0.25, 0.25), (0.0, 0.0)):
        dm = TextClassificationDataModule(train_path=str(path), val_fraction=val, test_fraction=test)
        with pytest.raises(
            DataError, match=r"row 31 \(line 32\): column 'text' is empty \(1 empty text in this split\)"
        ):
            dm.prepare_data()


def test_texts_shared_between_training_and_test_are_said_with_the_first_quoted(tmp_path, recwarn):
    train = write_csv(tmp_path / "train.csv", [(f"film number {i} was fine", "fresh" if i % 2 else "rotten")
                                               for i in range(40)])  # fmt: skip
    test = write_csv(tmp_path / "test.csv", [("a new text", "fresh"), ("film number 5 was fine", "fresh")])
    dm = data(tmp_path, train_path=str(train), test_path=str(test), val_fraction=0.0)
    dm.prepare_data()
    dm.setup()
    said = [str(w.message) for w in recwarn if "also occur in training" in str(w.message)]
    assert said == [
        f"{test}: 1 of 2 test texts (50.0%) also occur in training (the first is number 2 of the test split: 'film "
        "number 5 was fine'); the test scores count them. Deduplicate the data, or hold out by group, to score only what was "
        "not seen"
    ]


def test_a_declared_label_no_row_holds_is_said_and_a_single_label_refused(tmp_path, csv_files):
    """data.labels with a class the training data never holds trains a class that can never be learnt: said,
    with the file; a list of one label is refused as data.labels', not blamed on the column."""
    dm = data(tmp_path, **csv_files, labels=["rotten", "fresh", "certified"])
    with pytest.warns(
        UserWarning,
        match=r"data.labels: 'certified' held by no training row of .*train.csv \(column 'label'\)",
    ):
        dm.setup()
    assert dm.labels == ["rotten", "fresh", "certified"]
    with pytest.raises(DataError, match=r"data.labels: \['fresh'\] lists fewer than 2 labels"):
        data(tmp_path, **csv_files, labels=["fresh"]).setup()


def test_a_rows_line_is_counted_as_pandas_reads_rows_blank_lines_skipped_a_quoted_empty_kept(tmp_path):
    """A one-column CSV's "" is a row to pandas (an empty text), a blank or all-space line is not: the line an
    error names is the row's own, not one above it."""
    import pandas as pd

    from datamodules.text_sources import table_line

    path = tmp_path / "one.csv"
    path.write_text('text\n\nhello\n""\n"multi\nline"\n   \nworld\n')
    assert pd.read_csv(path, keep_default_na=False)["text"].tolist() == ["hello", "", "multi\nline", "world"]
    assert [table_line(path, row) for row in range(4)] == [3, 4, 5, 8]
    tsv = tmp_path / "rows.tsv"  # a line of tabs alone (a spreadsheet's empty row) is a row too
    tsv.write_text("text\tlabel\nhello\tpos\n\t\n\nworld\tneg\n")
    assert len(pd.read_csv(tsv, sep="\t")) == 3
    assert [table_line(tsv, row) for row in range(3)] == [2, 3, 5]


def test_subset_sizes_above_a_split_take_it_all_and_say_so(tmp_path, csv_files):
    dm = data(tmp_path, **csv_files, train_size=1000, test_size=500)
    with pytest.warns(UserWarning) as caught:
        dm.setup()
    said = [str(w.message) for w in caught]
    assert len(dm.splits["train"]) == 60 and len(dm.splits["test"]) == 15
    assert f"data.train_size 1000: {csv_files['train_path']} has 60 examples; all 60 are used" in said
    assert f"data.test_size 500: {csv_files['test_path']} has 15 examples; all 15 are used" in said


def test_a_bpe_vocabulary_below_its_bytes_is_said_not_trained_bigger_behind_the_configs_back(
    tmp_path, csv_files
):
    with pytest.warns(UserWarning, match=r"^data.tokenizer_vocab_size: 5 is below a byte-level BPE's 260 base tokens "
                                         r"\(256 bytes and 4 special\), so the tokenizer has 260; give at least that, or "
                                         r"data.tokenizer wordpiece"):  # fmt: skip
        data(tmp_path, **csv_files, tokenizer="bpe", tokenizer_vocab_size=5)


def test_a_tokenizer_path_that_does_not_exist_is_said_as_a_missing_folder(tmp_path, monkeypatch):
    """A path (starts with / or ., or has more than ORG/NAME's one slash) is not looked up as a hub name, whose
    error would be "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"."""
    from datamodules.text_tokenize import pretrained_tokenizer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^data.tokenizer: folder '/nonexistent/tok' not found$"):
        pretrained_tokenizer("/nonexistent/tok")
    with pytest.raises(DataError, match=rf"^data.tokenizer: folder 'models/my/tok' not found \(relative to the "
                                        rf"working folder {tmp_path}\)$"):  # fmt: skip
        pretrained_tokenizer("models/my/tok")


def test_whole_number_labels_read_as_floats_match_names_written_either_way(tmp_path):
    """A label column of whole numbers that a fraction-free float column (a missing value, an old export) gives
    as 2.0: the class names are the integers; names written "2.0" (data.labels, or a checkpoint of an earlier
    version, which saved them so) are the same classes, and the checkpoint's names are kept."""
    from datamodules.text_sources import label_key

    assert [label_key(v) for v in (2.0, "2.0", 2, "2", "two", 1.5, "-1.00")] == [
        "2",
        "2",
        "2",
        "2",
        "two",
        "1.5",
        "-1",
    ]
    path = tmp_path / "f.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{float(i % 2)}\n" for i in range(20)))
    dm = data(tmp_path, train_path=str(path), val_fraction=0.0, test_fraction=0.0)
    dm.prepare_data()
    assert dm.labels == ["0", "1"]
    given = data(tmp_path, train_path=str(path), val_fraction=0.0, test_fraction=0.0, labels=["0.0", "1.0"])
    given.prepare_data()
    assert given.labels == ["0.0", "1.0"]
    dm.load_state_dict({"labels": ["0.0", "1.0"]})  # an earlier version's names of the same classes
    with pytest.raises(DataError, match="differ from this data's labels"):
        dm.load_state_dict({"labels": ["1", "0"]})


def test_a_class_whose_only_row_is_held_out_is_said_as_such(tmp_path):
    """Trial 23: 'value meh is not one of the labels' named no cause: the seeded split had put the class's only
    row in the validation part, and the labels come from the training part."""
    from datamodules.text import TextClassificationDataModule

    rows = [
        "text,stars",
        *(f"film {i} was ok,{'good' if i % 2 else 'bad'}" for i in range(29)),
        "odd one,meh",
    ]
    (tmp_path / "rare.csv").write_text("\n".join(rows) + "\n")
    module = TextClassificationDataModule(train_path=str(tmp_path / "rare.csv"), label_column="stars",
                                          val_fraction=0.3, test_fraction=0.3, cache_dir=str(tmp_path / "c"))  # fmt: skip
    with pytest.raises(DataError, match=r"rare.csv \[val part\]: row 30 \(line 31\): column 'stars' value 'meh' is "
                       r"not one of the labels \['bad', 'good'\] \(the labels of the training part of that file: the "
                       r"seeded split put every row of this class in this part"):  # fmt: skip
        module.setup()


def test_a_delimiter_at_every_lines_end_adds_no_column(tmp_path):
    """Trial 23: a spreadsheet's export, a comma ending every line: predictions.tsv carried an empty 'Unnamed: 2'."""
    from datamodules.text_sources import load_file

    (tmp_path / "t.csv").write_text("text,label,\n" + "".join(f"film {i},good,\n" for i in range(5)))
    assert load_file(str(tmp_path / "t.csv"), "train_path", str(tmp_path / "c")).column_names == [
        "text",
        "label",
    ]
    (tmp_path / "u.csv").write_text("text,label,\n" + "".join(f"film {i},good,{i}\n" for i in range(5)))
    kept = load_file(str(tmp_path / "u.csv"), "train_path", str(tmp_path / "c")).column_names
    assert kept == ["text", "label", "Unnamed: 2"]  # values there: a column of the file, kept


@pytest.mark.parametrize("suffix, sep", [(".tsv", "\t"), (".csv", ",")])
def test_a_quote_closed_lines_later_is_said_and_a_text_over_lines_is_not(tmp_path, suffix, sep):
    """A quote opened in a text and closed two lines later made those lines one row: two rows were lost unsaid."""
    from datamodules.text_sources import load_file

    merged = tmp_path / f"m{suffix}"
    merged.write_text(
        f'text{sep}label\ngood film{sep}1\n"great movie{sep}1\nbad film{sep}0\nok"{sep}1\nfine{sep}0\n'
    )
    with pytest.warns(UserWarning, match=rf"m\{suffix}:3: column 'text' holds a quoted text that runs over 3 "
                      r"lines, and 2 of them read as rows of their own \('great movie"):  # fmt: skip
        assert len(load_file(str(merged), "train_path", str(tmp_path / "c"))) == 3
    trailing = (
        tmp_path / f"t{suffix}"
    )  # a separator ending every line (a spreadsheet's): its empty field matches
    trailing.write_text(f'text{sep}label{sep}\ngood film{sep}1{sep}\n"great movie{sep}1{sep}\nbad film{sep}0{sep}\n'
                        f'ok"{sep}1{sep}\nfine{sep}0{sep}\n')  # fmt: skip
    with pytest.warns(
        UserWarning, match=rf"t\{suffix}:3: column 'text' holds a quoted text that runs over 3 lines"
    ):
        assert len(load_file(str(trailing), "train_path", str(tmp_path / "c"))) == 3
    whole = tmp_path / f"w{suffix}"  # a review over two lines, a separator in it: a row as it should be
    whole.write_text(
        f'text{sep}label\ngood film{sep}1\n"a review{sep} and more\nover two lines"{sep}1\nfine{sep}0\n'
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_file(str(whole), "train_path", str(tmp_path / "c"))) == 3
