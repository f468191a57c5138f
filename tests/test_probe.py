"""The bias probe: causal scoring against transformers' own log-probabilities, the share and its interval by
hand, the direction of antistereo pairs, and bad probe data."""

import numpy as np
import pandas as pd
import pytest
import torch
from test_gpt import tiny_llama

from archbench.errors import DataError
from experiments.probe import bias_table, causal_scores, read_crows_pairs
from lit_models.gpt import from_hf


class IdTokenizer:
    """Words of the form 'w12' -> token 12: a tokenizer the tests can read."""

    eot_id = 2

    def encode(self, text: str, where: str = "text") -> list[int]:
        return [int(w[1:]) for w in text.split()]


def test_causal_scores_equal_summed_token_log_probabilities_from_transformers():
    hf = tiny_llama()
    net = from_hf(hf)
    sentences = ["w5 w9 w13", "w7 w7 w30 w31 w4 w8", "w40"]
    scores = causal_scores(net, IdTokenizer(), sentences, batch_size=2)  # padded batches, sorted by length
    for sentence, score in zip(sentences, scores, strict=True):
        ids = torch.tensor([[2, *IdTokenizer().encode(sentence)]])
        with torch.no_grad():
            logp = hf(ids).logits.log_softmax(-1)[0, :-1]
        expected = float(logp.gather(-1, ids[0, 1:, None]).sum())
        assert score == pytest.approx(expected, abs=1e-4)


def _write(path, rows, columns=("sent_more", "sent_less", "stereo_antistereo", "bias_type")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path)
    return path


def test_sent_more_is_the_stereotyping_sentence_in_both_directions(tmp_path):
    # CrowS-Pairs' definition: sent_more is the more stereotyping sentence; an antistereo pair's sent_less
    # violates a stereotype. The paper's metric counts sent_more preferred in both directions.
    path = _write(tmp_path / "pairs.csv", [("A more", "A less", "stereo", "race-color"),
                                            ("B more", "B less", "antistereo", "gender")])  # fmt: skip
    pairs = read_crows_pairs(path)
    assert pairs[["stereotyping", "other"]].values.tolist() == [["A more", "A less"], ["B more", "B less"]]
    assert pairs["direction"].tolist() == ["stereo", "antistereo"] and pairs["line"].tolist() == [2, 3]
    table = bias_table(pairs, np.array([True, False]))
    assert table["direction: stereo"]["stereotyping_preferred"] == 1.0
    assert table["direction: antistereo"]["stereotyping_preferred"] == 0.0


def test_pairs_without_a_bias_type_are_said_and_grouped_as_unknown(tmp_path):
    path = _write(
        tmp_path / "p.csv", [("A more", "A less", "stereo", "age"), ("B more", "B less", "stereo", " ")]
    )
    with pytest.warns(
        UserWarning, match=r"p.csv: 1 of 2 pairs have no bias_type \(line 3\): they count in the overall"
    ):
        pairs = read_crows_pairs(path)
    assert pairs["bias_type"].tolist() == ["age", "unknown"]


def test_share_and_bootstrap_interval():
    pairs = pd.DataFrame({"bias_type": ["a"] * 6 + ["b"] * 4})
    prefers = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    table = bias_table(pairs, prefers)
    assert table["all"]["pairs"] == 10 and table["all"]["stereotyping_preferred"] == pytest.approx(0.5)
    assert table["a"]["stereotyping_preferred"] == pytest.approx(4 / 6)
    assert table["b"]["stereotyping_preferred"] == pytest.approx(1 / 4)
    low, high = table["all"]["ci95"]
    assert 0.1 < low < 0.5 < high < 0.9  # ten pairs: a wide interval around the share


def test_a_pair_given_twice_is_scored_twice_and_said(tmp_path):
    """Trial 15: a repeated pair counted twice in the shares unsaid. CrowS-Pairs itself repeats one (its published
    figures count both), so it is a warning, not an error."""
    path = _write(tmp_path / "pairs.csv", [("A more", "A less", "stereo", "race-color"),
                                            ("B more", "B less", "stereo", "gender"),
                                            ("A more", "A less", "stereo", "race-color")])  # fmt: skip
    with pytest.warns(UserWarning, match=r"pairs.csv: 1 pair of 3 repeats an earlier one \(line 4 repeats line 2\): "
                                         r"each counts again in the shares"):  # fmt: skip
        assert len(read_crows_pairs(path)) == 3
    # bias types that differ only in case: groups of their own, said (trial 21: 'race' and 'Race' rows unsaid)
    path = _write(tmp_path / "cased.csv", [("A more", "A less", "stereo", "race"),
                                           ("B more", "B less", "stereo", "Race")])  # fmt: skip
    with pytest.warns(UserWarning, match=r"cased.csv: bias types that differ only in case or spaces are separate "
                                         r"groups: 'race' \(line 2\), 'Race' \(line 3\); a typo\?"):  # fmt: skip
        assert read_crows_pairs(path)["bias_type"].tolist() == ["race", "Race"]


def test_the_report_says_ties_and_pairs_left_out():
    from experiments.probe import report

    table = bias_table(pd.DataFrame({"bias_type": ["a", "a"]}), np.array([True, False]))
    result = {"model": "m", "kind": "causal", "scoring": "s", "table": table, "ties": 1, "tie_lines": [4],
              "data": "p.csv", "left_out": 2, "left_out_reasons": ["line 5: an unknown character", "line 9: too long"]}  # fmt: skip
    text = report(result)
    # the lines (trial 25: pairs differing only in case, alike to an uncased tokenizer, were ties without a line)
    assert ("\n1 pair scored the same for both sentences (lines 4 of p.csv: sentences the tokenizer reads alike, "
            "such as ones differing only in case or spacing for an uncased one): counted as not preferring sent_more") in text  # fmt: skip
    assert "2 pairs left out, the model cannot score them whole (first: line 5: an unknown character)" in text
    assert "scored the same" not in report({**result, "ties": 0})
    single = bias_table(pd.DataFrame({"bias_type": ["a", "a", "ageism"]}), np.array([True, False, True]))
    lines = report({**result, "table": single}).splitlines()
    assert (
        "| ageism | 1 | 100.0% | – (one pair) |" in lines
    )  # no interval from one pair (a bias type's typo?)


def test_own_pairs_need_only_the_two_sentences(tmp_path):
    path = _write(
        tmp_path / "own.csv", [("x more", "x less"), ("y more", "y less")], columns=("sent_more", "sent_less")
    )
    with pytest.warns(
        UserWarning,
        match=r"own.csv: no column stereo_antistereo or bias_type: sent_more is taken as the more stereotyping "
        r"sentence of every pair, and the table has no rows per direction or bias type",
    ):
        pairs = read_crows_pairs(path)
    assert pairs.columns.tolist() == ["stereotyping", "other", "line"]
    assert list(bias_table(pairs, np.array([True, False]))) == ["all"]
    typed = _write(
        tmp_path / "typed.csv", [("x more", "x less", "age")], columns=("sent_more", "sent_less", "bias_type")
    )
    with pytest.warns(UserWarning, match=r"no column stereo_antistereo: .* no rows per direction$"):
        pairs = read_crows_pairs(typed)
    assert list(bias_table(pairs, np.array([True]))) == ["all", "age"]


def test_bad_probe_data_names_file_line_and_value(tmp_path):
    missing = _write(tmp_path / "m.csv", [("x", "y")], columns=("sent_more", "sent_les"))
    with pytest.raises(
        DataError,
        match=r"no column sent_less \(its columns: '', 'sent_more', 'sent_les'\); CrowS-Pairs has sent_more, "
        r"sent_less, stereo_antistereo, bias_type \(the last two may be left out\)",
    ):
        read_crows_pairs(missing)
    (tmp_path / "semi.csv").write_text("sent_more;sent_less;stereo_antistereo;bias_type\nA;B;stereo;age\n")
    with pytest.raises(DataError, match=r"one column holding ';': is the file separated by ';'\?"):
        read_crows_pairs(tmp_path / "semi.csv")
    empty = _write(tmp_path / "e.csv", [("A", "B", "stereo", "age"), ("C", "   ", "stereo", "age")])
    with pytest.raises(DataError, match=r"e.csv:3: an empty sentence \(sent_more 'C', sent_less '   '\)"):
        read_crows_pairs(empty)
    direction = _write(tmp_path / "d.csv", [("A", "B", "sideways", "age")])
    with pytest.raises(DataError, match=r"d.csv:2: stereo_antistereo is 'sideways'"):
        read_crows_pairs(direction)
    same = _write(
        tmp_path / "s.csv", [("A b", "B a", "stereo", "age"), ("same words", " same words", "stereo", "age")]
    )
    with pytest.raises(
        DataError, match=r"s.csv:3: sent_more and sent_less are the same sentence \('same words'\)"
    ):
        read_crows_pairs(same)


def test_probe_command_on_a_language_model_trained_here(in_tmp, capsys):
    import json

    from conftest import CSV_ONLY, ROOT
    from lm_data import lm_args

    from experiments.cli import ExperimentCLI
    from experiments.probe import main

    gpt = str(ROOT / "experiments" / "lm" / "gpt.yaml")
    small = [
        "--model.net.init_args.n_layer=1",
        "--model.net.init_args.n_embd=32",
        "--model.net.init_args.n_head=2",
    ]
    args = ["--config", gpt, *lm_args(in_tmp / "corpus"), *small, *CSV_ONLY, "--trainer.max_steps=2",
            "--trainer.limit_val_batches=0", "--trainer.callbacks=null"]  # fmt: skip
    cli = ExperimentCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    ckpt = in_tmp / "lm.ckpt"
    cli.trainer.save_checkpoint(ckpt)  # weights and the tokenizer
    pairs = _write(in_tmp / "pairs.csv", [("It is a truth", "It is a wife", "stereo", "age"),
                                           ("Emma is rich", "Emma is good", "antistereo", "gender"),
                                           ("a man of fortune", "a wife", "stereo", "gender"),
                                           ("Zoë is rich", "Emma is rich", "stereo", "age")])  # fmt: skip
    main(["crows_pairs", "--data", str(pairs), "--config", gpt, "--ckpt", str(ckpt), *lm_args(in_tmp / "corpus"),
          *small, "--out", "probe"])  # fmt: skip
    result = json.loads((in_tmp / "probe" / "probe.json").read_text())
    assert result["table"]["all"]["pairs"] == 2
    assert "probe: scoring 2 pairs with " in capsys.readouterr().out  # said before the long part starts
    assert set(result["table"]) == {"all", "direction: stereo", "direction: antistereo", "age", "gender"}
    # 'a man of fortune': 17 tokens with the end-of-text one, past the model's context of 16; 'Zoë': characters the
    # model never saw. Both pairs are left out, counted and said, not scored
    assert result["left_out"] == 2
    assert "line 4: 17 tokens, more than the model's context of 16" in result["left_out_reasons"][0]
    assert "line 5" in result["left_out_reasons"][1]
    assert "| gender | 1 |" in (in_tmp / "probe" / "probe.md").read_text()
    # each scored pair's two scores, by its line (trial 25: probe.json had no per-pair scores)
    scores = pd.read_csv(in_tmp / "probe" / "pairs.tsv", sep="\t")
    assert scores["line"].tolist() == [2, 3]
    assert scores["stereotyping"].tolist() == ["It is a truth", "Emma is rich"]  # sent_more, either direction
    assert (scores["stereotyping_score"] < 0).all() and (scores["other_score"] < 0).all()  # log-likelihoods
    assert result["ties"] == int((scores["stereotyping_score"] == scores["other_score"]).sum())


def test_a_repeated_header_and_an_empty_file_are_named_not_scored(tmp_path):
    """Trial 28: files joined with their headers scored the second header as a pair (7 pairs at 71.4% where the
    six real ones give 66.7%), unsaid; an empty file was 'no column sent_more, sent_less (its columns: )'."""
    path = tmp_path / "pairs.csv"
    path.write_text("sent_more,sent_less\nA more,A less\nB more,B less\nsent_more,sent_less\nC more,C less\n")
    with pytest.raises(
        DataError, match=r"pairs.csv:4: repeats the header \(sent_more, sent_less\): files joined"
    ):
        read_crows_pairs(path)
    # the full layout too, where its direction column used to be blamed instead
    path.write_text(",sent_more,sent_less,stereo_antistereo,bias_type\n0,A more,A less,stereo,race\n"
                    ",sent_more,sent_less,stereo_antistereo,bias_type\n")  # fmt: skip
    with pytest.raises(DataError, match=r"pairs.csv:3: repeats the header"):
        read_crows_pairs(path)
    path.write_text("")
    with pytest.raises(
        DataError, match=r"pairs.csv: the file is empty \(expected a header: sent_more, sent_less"
    ):
        read_crows_pairs(path)


def test_probe_lines_count_blank_lines_and_bytes_that_are_not_utf8_are_named(tmp_path):
    path = tmp_path / "pairs.csv"
    header = b",sent_more,sent_less,stereo_antistereo,bias_type\n"
    path.write_bytes(header + b'0,"A\nmore",A less,stereo,race\n\n1,B more,B less,sideways,race\n')
    with pytest.raises(DataError, match=r"pairs.csv:5: stereo_antistereo is 'sideways'"):
        read_crows_pairs(path)
    path.write_bytes(header + "0,Caf\u00e9 more,less,stereo,race\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"not UTF-8 text: byte {len(header) + 6} \(line 2\) is 0xe9"):
        read_crows_pairs(path)
