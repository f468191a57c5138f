import numpy as np
import pytest
import torch

from archbench.errors import DataError
from datamodules.dna import DNADataModule, Simulation, one_hot, reverse_complement
from datamodules.dna_io import N_CODE, from_strings, to_strings, write_text
from datamodules.dna_simulator import BACKGROUND, motif_probabilities, noise_ceiling, simulate
from datamodules.storage import RaggedCollate, RaggedDataset

TINY = Simulation(n_train=64, n_val=16, n_test=16, seq_len=50)


def _codes(*seqs):
    data = RaggedDataset(from_strings(list(seqs), [0.0] * len(seqs)))
    batch = RaggedCollate(N_CODE, np.uint8)([data[i] for i in range(len(data))])
    return batch["x"], batch["lengths"]


def test_one_hot_n_and_padding_are_zero_rows():
    codes, lengths = _codes("ACGTN", "AC")
    x = one_hot(codes)
    assert x.shape == (2, 5, 4) and x.dtype == torch.float32
    assert x[0, :4].tolist() == torch.eye(4).tolist()
    assert x[0, 4].sum() == 0  # N
    assert x[1, 2:].sum() == 0  # padding
    assert lengths.tolist() == [5, 2]


def test_reverse_complement_within_each_length():
    codes, lengths = _codes("AACGT", "ACG")
    rc = reverse_complement(codes, lengths)
    letters = np.array(list("ACGTN"))
    assert "".join(letters[rc[0]]) == "ACGTT"
    assert "".join(letters[rc[1, :3]]) == "CGT"
    assert rc[1, 3:].tolist() == [4, 4]  # padding stays at the end
    assert torch.equal(reverse_complement(rc, lengths), codes)  # an involution


def test_reverse_complement_keeps_n():
    codes, lengths = _codes("ANNC")
    assert reverse_complement(codes, lengths)[0].tolist() == [2, 4, 4, 3]


def test_simulator_is_deterministic_and_reports_a_ceiling():
    a, b, c = simulate(300, seed=5), simulate(300, seed=5), simulate(300, seed=6)
    assert np.array_equal(a.data.values, b.data.values) and np.array_equal(a.data.labels, b.data.labels)
    assert not np.array_equal(a.data.values, c.data.values)
    assert a.data.lengths.tolist() == [250] * 300
    ceiling = noise_ceiling(a)
    assert 0.8 < ceiling < 0.97
    assert noise_ceiling(simulate(300, noise_std=0.0, seed=5)) == pytest.approx(1.0)


def _best_motif_score(codes: np.ndarray, name: str) -> np.ndarray:
    """Best log-odds score of a motif over positions and both strands: (n, L) codes -> (n,)."""
    log_odds = np.log(motif_probabilities(name) / BACKGROUND)  # (w, 4)
    both = np.stack([log_odds, log_odds[::-1, ::-1]])  # forward, reverse complement
    w = log_odds.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(codes, w, axis=1)  # (n, L - w + 1, w)
    scores = both[:, np.arange(w), windows].sum(-1)  # (2, n, L - w + 1)
    return scores.max(axis=(0, 2))


def test_simulated_sequences_hold_planted_motifs():
    n, length = 2000, 250
    planted = simulate(n, seed=0).data.values.reshape(n, length)
    background = np.random.default_rng(0).choice(4, size=(n, length), p=BACKGROUND)
    # Long motifs only: a 7 bp one like GATA1 occurs by chance in ~15% of random 250 bp sequences.
    for name in ("CTCF", "SPI1"):
        threshold = np.quantile(_best_motif_score(background, name), 0.99)
        hits = (_best_motif_score(planted, name) > threshold).mean()
        assert hits > 0.3, (name, hits)  # planted in 60% of sequences; background passes 1% of the time


def test_datamodule_simulated_batches():
    dm = DNADataModule(simulation=TINY, batch_size=8)
    assert (dm.in_channels, dm.num_outputs, dm.seq_len, dm.task) == (4, 1, 50, "regression")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].dtype == torch.uint8 and batch["x"].shape == (8, 50)
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["x"].shape == (8, 50, 4) and out["y"].dtype == torch.float32
    assert dm.noise_ceiling is not None


def test_missing_val_and_test_files_are_a_seeded_split(tmp_path):
    write_text(tmp_path / "train.txt", simulate(100, seq_len=50, seed=1).data)
    dm = DNADataModule(
        train_path=str(tmp_path / "train.txt"), val_fraction=0.2, test_fraction=0.1, split_seed=3
    )
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 70, "val": 20, "test": 10}
    again = DNADataModule(
        train_path=str(tmp_path / "train.txt"), val_fraction=0.2, test_fraction=0.1, split_seed=3
    )
    again.setup()
    assert to_strings(again.splits["val"]) == to_strings(dm.splits["val"])
    all_seqs = sum((to_strings(dm.splits[k]) for k in ("train", "val", "test")), [])
    assert sorted(all_seqs) == sorted(to_strings(simulate(100, seq_len=50, seed=1).data))


def test_a_small_file_holds_out_at_least_one_sequence_and_an_empty_split_is_not_evaluated(tmp_path):
    """Trial 22: 10% of a 5-sequence file was no sequence: fit ran without validation, and test and predict ended
    with status 0 and no output."""
    from conftest import CNN, CSV_ONLY, last_line, run_main

    from lit_models.metrics import prediction_metrics

    write_text(tmp_path / "tiny.txt", simulate(5, seq_len=50, seed=1).data)
    dm = DNADataModule(train_path=str(tmp_path / "tiny.txt"), val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 3, "val": 1, "test": 1}
    from datamodules.splits import held_out_sizes, hold_out

    tenths = {"val": 0.1, "test": 0.1}  # smaller files hold out what they can and keep a training row
    assert [held_out_sizes(n, tenths) for n in (1, 2, 3)] == [{"val": 0, "test": 0}, {"val": 1, "test": 0},
                                                               {"val": 1, "test": 1}]  # fmt: skip
    assert (
        len(hold_out(1, {"val": 1, "test": 1}, 0)["train"]) == 0
    )  # sizes past the file: no training row, no crash
    one = prediction_metrics(
        "regression", 1
    )  # R² of one example: NaN as Pearson's, not torchmetrics' ValueError
    one.update(torch.tensor([0.5]), torch.tensor([1.0]))
    with pytest.warns(UserWarning):  # torchmetrics' own, of Pearson's variance
        assert torch.isnan(one.compute()["r2"])
    args = [
        "--config",
        CNN,
        f"--data.train_path={tmp_path / 'tiny.txt'}",
        "--data.test_fraction=0",
        *CSV_ONLY,
    ]
    for command in ("test", "predict"):
        result = run_main(command, *args, cwd=tmp_path)
        assert result.returncode == 2 and last_line(result) == (
            f"error: data: the test split has no examples, so {command} has nothing to do: give a file "
            f"(data.test_path{', data.predict_path' if command == 'predict' else ''}) or a held-out fraction above "
            "0 of a training file large enough to hold one"
        )
        # refused before a run folder or a W&B run is made (trial 30: both were left)
        assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "wandb").exists()


def test_regression_labels_that_do_not_vary_name_the_file(tmp_path):
    """Trial 30: 'target_std must be positive, got 0.0', of the task's parameter, without the file."""
    (tmp_path / "const.txt").write_text("".join(f"{'ACGT'[i % 4] * 6}AC 1.0\n" for i in range(12)))
    dm = DNADataModule(train_path=str(tmp_path / "const.txt"), val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(
        DataError, match=r"const.txt: every training label is 1: a regression has nothing to learn"
    ):
        _ = dm.target_std


def test_classification_labels_must_be_class_ids(tmp_path):
    (tmp_path / "c.txt").write_text("ACGT 0\nGGCC 2\nAATT 1\n" * 5)
    dm = DNADataModule(
        train_path=str(tmp_path / "c.txt"), task="classification", val_fraction=0.2, test_fraction=0.2
    )
    assert dm.num_outputs == 3
    (tmp_path / "new.txt").write_text("ACGT\nGG\n")  # unlabelled: not a class
    with_predict = DNADataModule(
        train_path=str(tmp_path / "c.txt"), predict_path=str(tmp_path / "new.txt"), task="classification"
    )
    assert with_predict.num_outputs == 3
    (tmp_path / "bad.txt").write_text("ACGT 0\nGGCC 1.5\n" * 5)
    with pytest.raises(DataError, match=r"label 1\.5 is not a class id"):
        DNADataModule(train_path=str(tmp_path / "bad.txt"), task="classification").setup()


def test_test_time_reverse_complement_view():
    dm = DNADataModule(simulation=TINY, batch_size=4, test_time_reverse_complement=True)
    out = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert torch.equal(
        out["x_rc"], one_hot(reverse_complement(out["x"].argmax(-1).to(torch.uint8), out["lengths"]))
    )


def test_bad_options_are_named():
    with pytest.raises(DataError, match="val_fraction: 1.5"):
        DNADataModule(val_fraction=1.5)


def test_sequences_shared_between_training_and_a_held_out_split_are_said(tmp_path, recwarn):
    """Exact copies across splits (same bases, same length) are counted per held-out split and the first quoted;
    a prefix, a longer or shorter sequence, or the reverse complement is not a copy."""
    from datamodules.storage import shared_rows

    train = from_strings(["ACGT", "ACGTA", "TTTT", "ACG", "A"], [0.0] * 5)
    held = from_strings(["ACGT", "ACGTT", "TTT", "A", "CCCC", "TTTT", "ACGTAA"], [0.0] * 7)
    assert shared_rows(train, held).tolist() == [0, 3, 5]
    assert shared_rows(train, held.view(np.array([6, 5, 2, 0]))).tolist() == [1, 3]  # a subset: its positions

    rng = np.random.default_rng(0)
    unique = ["".join(rng.choice(list("ACGT"), 40)) for _ in range(60)]
    write_text(tmp_path / "train.txt", from_strings(unique, [0.5] * 60))
    write_text(tmp_path / "test.txt", from_strings([unique[7], "ACGT" * 10, unique[3]], [0.5] * 3))
    DNADataModule(train_path=str(tmp_path / "train.txt"), test_path=str(tmp_path / "test.txt"),
                  val_fraction=0.2).setup()  # fmt: skip
    said = [str(w.message) for w in recwarn if "also occur in training" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'test.txt'}: 2 of 3 test sequences (66.7%)")
    assert f"the first is number 1 of the test split: {unique[7][:30]}... (40 bp)" in said[0]


def test_a_label_that_is_not_a_class_id_names_its_line_in_the_training_file(tmp_path):
    from datamodules.dna_io import encode_file

    lines = [
        "ACGT 0",
        "GGCC 2",
        "AATT 1",
        "ACGA 1",
        "TTGA 0",
        "CCGA 2",
        "GGGTGA 5.111",
        "ACCA 0",
        "GATT 1",
        "CA 2",
    ]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n")
    split = {"task": "classification", "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 1}
    why = "is not a class id (task classification takes integer ids 0..K-1; task regression reads numbers)"
    with pytest.raises(DataError) as err:  # line 7 is held out for validation by this seed
        DNADataModule(train_path=str(path), **split).setup()
    assert str(err.value) == f"{path}:7: label 5.111 {why}"
    path.with_suffix(".csv").write_text("sequence,y\n" + "\n".join(x.replace(" ", ",") for x in lines) + "\n")
    with pytest.raises(DataError) as err:  # a table names its label column; line 1 is the header
        DNADataModule(train_path=str(path.with_suffix(".csv")), label_column="y", **split).setup()
    assert str(err.value) == f"{path.with_suffix('.csv')}:8: field 'y': 5.111 {why}"
    with pytest.warns(
        UserWarning, match=r"skipped 1 of 10 lines with bad data \(first: .*c\.txt:7: label 5\.111"
    ):
        dm = DNADataModule(train_path=str(path), on_bad_line="skip", **split)
        dm.setup()
    assert sum(map(len, dm.splits.values())) == 9 and dm.num_outputs == 3
    # An encoded folder keeps no lines: its first bad record (in the folder, whichever split holds it) is named.
    path.write_text("\n".join(lines).replace("AATT 1", "AATT -1") + "\n")  # record 3, a training one
    encode_file(path, tmp_path / "enc")
    with pytest.raises(DataError) as err:
        DNADataModule(train_path=str(tmp_path / "enc"), **split).setup()
    assert str(err.value) == f"{tmp_path / 'enc'}: record 3: label -1 {why}"


def test_predict_on_a_held_out_split_of_a_text_file_names_its_lines_and_class_ids(tmp_path):
    """A classifier's test split held out of a plain-text file (blank and bad lines skipped): each row's line in
    the file and its class id, written as the predicted class is (2, not 2.0), in the split's order."""
    lines = [
        "ACGT 0",
        "",
        "GGCCA 1",
        "ACGU 2",
        *(f"{'ACGT'[k % 4] * (k % 7 + 3)} {k % 3}" for k in range(40)),
    ]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    data = DNADataModule(train_path=str(tmp_path / "c.txt"), task="classification", on_bad_line="skip",
                         val_fraction=0.2, test_fraction=0.25)  # fmt: skip
    data.setup()
    keys = dict(data.prediction_keys())
    assert (
        list(keys) == ["line", "label"] and len(keys["line"]) == len(data.splits["test"]) == 10
    )  # 0.25 of 42
    assert keys["label"].dtype == np.int64
    for line, label in zip(keys["line"], keys["label"], strict=True):
        assert lines[line - 1].split()[1] == str(label)  # the file's line, counted from 1
    assert 4 not in set(keys["line"].tolist())  # the bad record is no row
