"""The masked-LM task: BERT's corruption by its shares, evaluation masks fixed by each window, the tied head, a
masked LM's encoder starting a text classifier (``init_from``) and its refusals; the probe's pseudo-log-likelihood
against a hand loop on a tiny ``BertForMaskedLM``, the probe command on it and on our masked LM, and a model
that is neither kind refused."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import CSV_ONLY, ROOT, assert_same_step, last_line, run_main
from lm_data import tiny_corpus
from text_data import TEXT, reviews, text_args, tiny_bert
from wandb_offline import find_runs, read_run

from archbench.errors import ConfigError
from lit_models import MaskedLanguageModelTask, TransformerNet

MLM = str(ROOT / "experiments" / "mlm" / "transformer.yaml")
SMALL = ["--model.net.init_args.d_model=16", "--model.net.init_args.nhead=2",
         "--model.net.init_args.dim_feedforward=32"]  # fmt: skip


def tiny_task(vocab: int = 1000, mask_id: int = 3, **kwargs) -> MaskedLanguageModelTask:
    net = TransformerNet(None, vocab, 40, vocab_size=vocab, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                         dropout=0.0)  # fmt: skip
    return MaskedLanguageModelTask(
        net, num_outputs=vocab, mask_id=mask_id, special_ids=[0, 1, 2, 3], **kwargs
    )


def test_corruption_follows_bert_shares_and_spares_special_tokens_and_padding():
    torch.manual_seed(0)
    task = tiny_task()
    x = torch.randint(4, 1000, (400, 32))
    x[:, 5] = 1  # a special token in every window
    lengths = torch.randint(16, 33, (400,))
    inputs, targets = task.corrupt(x, lengths, fixed=False)
    chosen = targets != -100
    real = torch.arange(32)[None, :] < lengths[:, None]
    assert not chosen[~real].any() and not chosen[:, 5].any()
    assert chosen.sum() / (real.sum() - 400) == pytest.approx(0.15, abs=0.015)
    masked = (inputs[chosen] == 3).float().mean()
    kept = (inputs[chosen] == x[chosen]).float().mean()
    assert masked == pytest.approx(0.8, abs=0.04) and kept == pytest.approx(0.1, abs=0.03)
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.03)  # a random token
    assert torch.equal(targets[chosen], x[chosen]) and torch.equal(inputs[~chosen], x[~chosen])


def test_evaluation_masks_depend_only_on_the_window():
    task = tiny_task()
    windows = torch.randint(4, 1000, (3, 20))
    inputs, targets = task.corrupt(windows, torch.full((3,), 20), fixed=True)
    assert (targets != -100).any(axis=1).all()
    assert not torch.equal(targets[0] != -100, targets[1] != -100)  # each window its own positions
    # The same windows in another order, beside another one, padded wider: the same masks.
    batch = F.pad(torch.cat([torch.randint(4, 1000, (1, 20)), windows.flip(0)]), (0, 6))
    inputs2, targets2 = task.corrupt(batch, torch.full((4,), 20), fixed=True)
    assert torch.equal(targets2[1:, :20].flip(0), targets) and torch.equal(inputs2[1:, :20].flip(0), inputs)
    assert (targets2[:, 20:] == -100).all()


def test_head_is_tied_and_the_loss_is_the_cross_entropy_of_the_chosen_tokens():
    task = tiny_task().eval()
    assert task.net.head.decoder.weight is task.net.tokens.embedding.weight
    x, lengths = torch.randint(4, 1000, (6, 24)), torch.tensor([24, 20, 24, 9, 24, 17])
    nats, tokens, correct, _ = task._nats({"x": x, "lengths": lengths}, fixed=True)
    inputs, targets = task.corrupt(x, lengths, fixed=True)
    chosen = targets != -100
    logits = task(inputs, lengths)[chosen]  # every position, then the chosen ones
    assert nats.item() == pytest.approx(
        F.cross_entropy(logits, targets[chosen], reduction="sum").item(), rel=1e-5
    )
    assert tokens == chosen.sum() and correct == (logits.argmax(-1) == targets[chosen]).sum()


def test_a_tokenizer_without_a_mask_token_is_refused(in_tmp):
    from experiments.cli import ExperimentCLI

    args = ["--config", MLM, f"--data.train_path={tiny_corpus(in_tmp / 'corpus')}", "--data.tokenizer=char",
            "--data.context_length=16", *SMALL, *CSV_ONLY, "--trainer.max_steps=1"]  # fmt: skip
    result = run_main("fit", *args, cwd=in_tmp)  # one line, found before a logger or the config writes a file
    assert result.returncode == 2 and last_line(result).startswith("error: data.tokenizer: has no mask token")
    assert not (in_tmp / "lightning_logs").exists()
    cli = ExperimentCLI(args=args, run=False)
    with pytest.raises(ConfigError, match="data.tokenizer: has no mask token"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)


@pytest.fixture
def masked_lm(in_tmp):
    """A tiny masked LM fitted through the CLI on a tiny corpus with a BERT-style tokenizer: (checkpoint,
    tokenizer folder, the fit's arguments)."""
    from experiments.cli import ExperimentCLI

    folder = str(tiny_bert(in_tmp / "bert", [t for t, _ in reviews(200)], masked=True))
    args = ["--config", MLM, f"--data.train_path={tiny_corpus(in_tmp / 'corpus')}", f"--data.tokenizer={folder}",
            "--data.context_length=16", "--data.batch_size=4", *SMALL, *CSV_ONLY, "--trainer.max_steps=3",
            "--trainer.limit_val_batches=2", f"--trainer.default_root_dir={in_tmp / 'mlm'}",
            "--trainer.enable_progress_bar=false", f"--data.cache_dir={in_tmp / 'cache'}"]  # fmt: skip
    cli = ExperimentCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    assert {"val/loss", "val/ppl", "val/acc"} <= set(metrics) and metrics["val/ppl"] > 1
    ckpt = in_tmp / "mlm.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    return ckpt, folder, args


def test_a_masked_lm_encoder_starts_a_text_classifier_and_the_head_starts_fresh(tmp_path, masked_lm):
    from experiments.cli import ExperimentCLI

    ckpt, folder, _ = masked_lm
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    config = TEXT / "pretrained" / "transformer_mlm.yaml"
    args = [*text_args(tmp_path, config, tokenizer=folder), *SMALL, f"--model.init_from={ckpt}",
            "--model.optimizer.lr=0", "--trainer.max_steps=1", "--trainer.limit_val_batches=0"]  # fmt: skip
    cli = ExperimentCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # lr 0: the weights stay as loaded
    own = cli.model.state_dict()
    encoder = [k for k in saved if k.startswith("net.") and not k.startswith("net.head.")]
    assert len(encoder) > 10 and all(torch.equal(own[k], saved[k]) for k in encoder)
    assert own["net.head.weight"].shape == (2, 16)  # the classifier's own head, two classes

    with pytest.raises(ConfigError, match=r"trained on data tokenized by .* this data by 'wordpiece' "
                       r"\(data.tokenizer\), and [\d,]+ of the [\d,]+ ids both have mean other tokens \(id \d+ is"):  # fmt: skip
        bad = ExperimentCLI(
            args=[*text_args(tmp_path, config), *SMALL, f"--model.init_from={ckpt}"], run=False
        )
        bad.trainer.fit(bad.model, datamodule=bad.datamodule)
    # trial 25: the same tokenizer by another path (a copy, an absolute path) was refused by its name
    copy = shutil.copytree(folder, tmp_path / "my models" / "tokenizer")
    same = ExperimentCLI(args=[*text_args(tmp_path, config, tokenizer=str(copy)), *SMALL, f"--model.init_from={ckpt}"],
                         run=False)  # fmt: skip
    state, fresh_head, left_out = same.model.init_state(str(ckpt), same.datamodule)
    assert fresh_head and left_out == [k.removeprefix("net.") for k in saved if k.startswith("net.head.")]
    assert all(torch.equal(state[k.removeprefix("net.")], saved[k]) for k in encoder)
    other = [*text_args(tmp_path, config, tokenizer=folder), *SMALL, "--model.net.init_args.num_layers=1",
             f"--model.init_from={ckpt}"]  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"does not fit model.net \(TransformerNet\): not in this net: blocks.1"
    ):
        bad = ExperimentCLI(args=other, run=False)
        bad.trainer.fit(bad.model, datamodule=bad.datamodule)
    # from the command line: one line, before the loggers start (no run folder, no W&B run)
    from conftest import run_main

    refused = tmp_path / "refused"
    result = run_main("fit", *other, f"--trainer.default_root_dir={refused}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "does not fit model.net (TransformerNet)" in result.stderr.strip().splitlines()[-1]
    assert not refused.exists()


def test_pseudo_log_likelihood_equals_a_hand_loop_on_a_tiny_bert(tmp_path):
    from transformers import BertForMaskedLM

    from experiments.probe import masked_scores, probed_weights, shared_positions

    folder = tiny_bert(tmp_path / "bert", [t for t, _ in reviews(200)], masked=True)
    model = probed_weights(str(folder))
    assert model.kind == "masked"
    a, b = model.encode("the film was great", "a"), model.encode("the long film was dull", "b")
    pa, pb = shared_positions(a, b, model.special_ids)
    assert 0 not in pa and len(a) - 1 not in pa  # [CLS] and [SEP] are never scored
    assert [a[p] for p in pa] == [b[p] for p in pb] and len(pa) == 3  # the, film, was
    scores = masked_scores(model.net, [a, b], [pa, pb], model.mask_id, batch_size=4)  # padded, mixed batches
    hf = BertForMaskedLM.from_pretrained(folder).eval()
    for ids, positions, score in ((a, pa, scores[0]), (b, pb, scores[1])):
        total = 0.0
        for p in positions:
            x = torch.tensor([ids])
            x[0, p] = model.mask_id
            with torch.no_grad():
                total += hf(x).logits[0, p].log_softmax(-1)[ids[p]].item()
        assert score == pytest.approx(total, abs=1e-4)


def _pairs(path):
    path.write_text("sent_more,sent_less,stereo_antistereo,bias_type\n"
                    "the film was great,the film was dull,stereo,age\n"
                    "a cast was funny,a cast was flat,antistereo,gender\n"
                    "the story is warm,the plot is warm,stereo,gender\n")  # fmt: skip
    return path


def test_probe_command_scores_a_hugging_face_masked_lm_and_logs_a_wandb_table(in_tmp, monkeypatch):
    from experiments.probe import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = tiny_bert(in_tmp / "bert", [t for t, _ in reviews(200)], masked=True)
    main(["crows_pairs", "--data", str(_pairs(in_tmp / "p.csv")), "--weights", str(folder), "--out", "probe"])
    result = json.loads((in_tmp / "probe" / "probe.json").read_text())
    assert result["kind"] == "masked" and result["table"]["all"]["pairs"] == 3
    (run,) = find_runs(in_tmp / "probe")
    logged = read_run(run)
    assert logged["run"]["group"] == "probe"
    assert (
        logged["summary"]["probe/stereotyping_preferred"] == result["table"]["all"]["stereotyping_preferred"]
    )
    (row,) = [h for h in logged["history"] if h.get("probe/table/_type") == "table-file"]
    saved = json.loads((run.parent / "files" / row["probe/table/path"]).read_text())  # the W&B Table itself
    assert saved["columns"][:3] == ["bias_type", "pairs", "stereotyping_preferred"]
    assert saved["data"][0][:3] == ["all", 3, result["table"]["all"]["stereotyping_preferred"]]

    plain = tiny_bert(in_tmp / "plain", [t for t, _ in reviews(50)])  # a BertModel: no head to score with
    with pytest.raises(ConfigError, match="BertModel: neither a masked LM"):
        main(["crows_pairs", "--data", str(in_tmp / "p.csv"), "--weights", str(plain), "--no-wandb"])


def test_probe_command_scores_a_masked_lm_trained_here(tmp_path, masked_lm, monkeypatch):
    from experiments.generate import main as generate
    from experiments.probe import main

    ckpt, _, args = masked_lm
    run_args = [a for a in args if not a.startswith("--trainer.")]
    out = tmp_path / "probe"
    main(["crows_pairs", "--data", str(_pairs(tmp_path / "p.csv")), "--ckpt", str(ckpt), *run_args,
          "--out", str(out), "--no-wandb"])  # fmt: skip
    result = json.loads((out / "probe.json").read_text())
    assert result["kind"] == "masked" and result["scoring"].startswith("pseudo-log-likelihood")
    assert result["table"]["all"]["pairs"] == 3
    with pytest.raises(ConfigError, match="a masked LM fills in tokens"):
        generate(["--ckpt", str(ckpt), *run_args, "--prompt", "the film"])


@pytest.mark.slow  # inductor compiles for 17 s on 2 cores (make test-all); test_models keeps a compile parity test
def test_compile_compiles_the_encoders_token_states_and_keeps_the_eager_loss_and_gradients():
    """--model.compile true on the masked LM compiles ``token_states`` (the pooled ``forward`` it never calls):
    one step's loss and gradients equal the eager task's on the same masks."""
    torch.manual_seed(0)
    compiled = tiny_task(compile=True)
    eager = tiny_task()
    eager.load_state_dict(compiled.state_dict())
    compiled.setup("fit")
    assert "token_states" in compiled._compiled
    x = torch.randint(4, 1000, (6, 32), generator=torch.Generator().manual_seed(2))
    assert_same_step(compiled, eager, {"x": x, "lengths": torch.tensor([32, 30, 25, 32, 16, 20])}, seed=5)


def test_a_split_where_no_token_is_masked_is_nan_and_said_not_a_perfect_score(in_tmp):
    """A validation file of two tokens: the fixed evaluation masks choose none of them. Its loss was 0 and its
    perplexity 1 (trial 21: a perfect score, and the best checkpoint); now NaN, with a warning that says why."""
    from experiments.cli import ExperimentCLI

    folder = str(tiny_bert(in_tmp / "bert", [t for t, _ in reviews(200)], masked=True))
    (in_tmp / "tiny.txt").write_text("a film\n")
    args = ["--config", MLM, f"--data.train_path={tiny_corpus(in_tmp / 'corpus')}", f"--data.tokenizer={folder}",
            f"--data.val_path={in_tmp / 'tiny.txt'}", "--data.context_length=16", "--data.batch_size=4", *SMALL,
            *CSV_ONLY, "--trainer.max_steps=2", f"--trainer.default_root_dir={in_tmp / 'mlm'}",
            "--trainer.enable_progress_bar=false", f"--data.cache_dir={in_tmp / 'cache'}"]  # fmt: skip
    cli = ExperimentCLI(args=args, run=False)
    with pytest.warns(UserWarning, match=r"^val: the validation split scored no token \(none of its tokens is chosen "
                                         r"for masking.*\), so its loss and perplexity are NaN"):  # fmt: skip
        (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    assert torch.isnan(torch.tensor([metrics["val/loss"], metrics["val/ppl"], metrics["val/acc"]])).all()
    cli = ExperimentCLI(args=[*args, "--trainer.val_check_interval=1"], run=False)
    with pytest.warns(UserWarning, match=r"^val: the validation split scored no token"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # not a diverged model: no error
    # Lightning's early stopping (check_finite) ends the fit at that NaN; the warning has said why
    assert cli.trainer.global_step == 1
