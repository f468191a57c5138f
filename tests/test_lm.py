"""The language-model data and task: splits by whole documents (or lines), the token cache, windows that score
every token once, random training windows in the run's order, bits per character, generation from a
checkpoint, and one-line errors for bad input."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_same_step, last_line, run_main
from lm_data import SENTENCES, lm_args, tiny_corpus

from archbench.errors import DataError
from datamodules.lm import LanguageModelDataModule
from datamodules.lm_tokenize import LMTokenizer, bpe_tokenizer
from experiments.cli import ExperimentCLI

GPT_YAML = ROOT / "experiments" / "lm" / "gpt.yaml"
TINY_GPT = [
    "--model.net.init_args.n_layer=1",
    "--model.net.init_args.n_embd=32",
    "--model.net.init_args.n_head=2",
]


def data(tmp_path, **kwargs) -> LanguageModelDataModule:
    if "train_path" not in kwargs:
        kwargs["train_path"] = str(tiny_corpus(tmp_path / "corpus"))
    module = LanguageModelDataModule(
        context_length=16, batch_size=4, cache_dir=str(tmp_path / "cache"), **kwargs
    )
    module.setup()
    return module


def decoded(module, split: str) -> str:
    return module.tokenizer.decode(np.asarray(module.streams[split]))


def test_documents_go_whole_to_one_split_in_corpus_order(tmp_path):
    module = data(tmp_path, val_fraction=0.3, test_fraction=0.3)  # a third each is about what is asked
    eot = module.tokenizer.decode([module.tokenizer.eot_id])
    for split, sentence in zip(("train", "val", "test"), SENTENCES, strict=True):
        assert decoded(module, split) == "\n".join([sentence] * 6) + "\n" + eot  # one document each, whole


def test_few_documents_that_would_hold_out_far_more_than_asked_are_cut_at_lines(tmp_path):
    """Four equal files at 10% + 10%: whole files would hold out half the corpus, so it is cut as one file is; a
    table's rows are never cut, and the shares they give are said."""
    corpus = tmp_path / "four"
    corpus.mkdir()
    for k in range(4):
        (corpus / f"{k}.txt").write_text(
            "".join(f"file {k} line {i}: {SENTENCES[k % 3]}\n" for i in range(50))
        )
    module = data(tmp_path, train_path=str(corpus))
    sizes = {s: len(decoded(module, s)) for s in ("train", "val", "test")}
    total = sum(sizes.values())
    assert sizes["val"] == pytest.approx(0.1 * total, rel=0.15) and sizes["test"] == pytest.approx(
        0.1 * total, rel=0.15
    )
    table = tmp_path / "rows.jsonl"
    table.write_text("".join(json.dumps({"text": f"row {k}: {SENTENCES[k % 3]}"}) + "\n" for k in range(4)))
    with pytest.warns(UserWarning, match=r"rows.jsonl: whole rows give validation 2\d.\d% and test 2\d.\d% of the corpus "
                                         r"\(data.val_fraction 0.1, data.test_fraction 0.1\)"):  # fmt: skip
        data(tmp_path, train_path=str(table))
    # one long line: no line break to cut at (trial 21: "the val split has 0 tokens", the cause unsaid)
    (tmp_path / "one.txt").write_text(f"{SENTENCES[0]} " * 400)
    with pytest.raises(DataError, match=r"one.txt: one line of [\d,]+ bytes, with no line break to cut the val and "
                                        r"test split\(s\) at; give data.val_path and data.test_path"):  # fmt: skip
        data(tmp_path, train_path=str(tmp_path / "one.txt"))


def test_a_single_file_is_cut_at_line_boundaries(tmp_path):
    lines = [f"line {i}: " + SENTENCES[i % 3] for i in range(200)]
    (tmp_path / "one.txt").write_text("\n".join(lines) + "\n")
    module = data(tmp_path, train_path=str(tmp_path / "one.txt"))
    parts = [decoded(module, s) for s in ("train", "val", "test")]
    assert (
        "".join(parts).removesuffix(module.tokenizer.decode([module.tokenizer.eot_id]))
        == "\n".join(lines) + "\n"
    )
    for part in parts[1:]:
        assert part.startswith("line ")  # a cut falls after a newline, never inside a line
    sizes = [len(p) for p in parts]
    assert sizes[1] == pytest.approx(0.1 * sum(sizes), rel=0.1) and sizes[2] == pytest.approx(
        0.1 * sum(sizes), rel=0.1
    )


def test_a_folder_of_few_long_files_is_cut_inside_them_and_empty_files_are_no_documents(tmp_path):
    """Two long novels, an empty file and a short note: whole documents from the end would leave training
    nothing, so the corpus is cut at line boundaries as one file would be."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, k in (("a.txt", 0), ("b.txt", 1)):
        (corpus / name).write_text(
            "".join(f"{name} line {i}: {SENTENCES[(i + k) % 3]}\n" for i in range(150))
        )
    (corpus / "c.txt").write_text("")
    (corpus / "notes.txt").write_text("a note\n")
    module = data(tmp_path, train_path=str(corpus))
    parts = [decoded(module, s) for s in ("train", "val", "test")]
    assert parts[0].startswith("a.txt line 0:") and all(len(p) > 100 for p in parts)
    assert "b.txt line" in parts[2] and "a note" in parts[2]  # the corpus's end goes to test


def test_a_byte_order_mark_and_windows_line_endings_read_as_the_plain_text(tmp_path, monkeypatch):
    """A corpus saved on Windows (a BOM, CRLF) gives the vocabulary and the tokens of the same text saved plainly,
    in every split: a folder split by documents, and given validation and test files."""
    import datamodules.lm as lm

    monkeypatch.setattr(lm, "CHUNK", 50)  # several pieces per file: the BOM only at a file's start
    plain = tiny_corpus(tmp_path / "plain")
    windows = tiny_corpus(tmp_path / "windows", encoding="utf-8-sig", newline="\r\n")
    assert (windows / "1-first.txt").read_bytes().startswith(b"\xef\xbb\xbf")

    def load(folder, given):
        train = folder / "1-first.txt" if given else folder
        paths = {k: str(folder / v) for k, v in given.items()}
        return data(tmp_path / f"{folder.name}-{len(given)}", train_path=str(train), **paths)

    for given in ({}, {"val_path": "2-second.txt", "test_path": "3-third.txt"}):
        expected, saved = load(plain, given), load(windows, given)
        assert saved.tokenizer.chars == expected.tokenizer.chars and "\r" not in saved.tokenizer.chars
        for split in ("train", "val", "test"):
            assert decoded(saved, split) == decoded(expected, split)


def test_evaluation_windows_predict_every_token_once(tmp_path):
    module = data(tmp_path)
    stream = np.asarray(module.streams["val"])
    targets, chars = [], 0
    for batch in module.val_dataloader():
        for y, n in zip(batch["y"], batch["lengths"], strict=True):
            assert (y[n:] == -100).all()
            targets += y[:n].tolist()
        chars += int(batch["chars"].sum())
    assert targets == stream[1:].tolist()
    assert chars == len(targets)  # characters: one each


def test_training_windows_follow_the_seed_and_the_epoch(tmp_path):
    module = data(tmp_path)
    loader = module.train_dataloader()
    n = len(module.streams["train"])
    assert len(loader.sampler) == (n - 1) // 16  # as many windows as fit side by side

    def starts(seed, epoch):
        torch.manual_seed(seed)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [tuple(b["x"][:, 0].tolist()) + tuple(b["x"][:, 1].tolist()) for b in loader]

    assert starts(0, 0) == starts(0, 0)
    assert starts(0, 0) != starts(0, 1) and starts(0, 0) != starts(1, 0)
    batch = next(iter(loader))
    assert torch.equal(batch["x"][:, 1:], batch["y"][:, :-1])  # y is x shifted by one


def test_the_token_cache_is_read_not_rebuilt(tmp_path, monkeypatch):
    corpus = str(tiny_corpus(tmp_path / "corpus"))
    first = data(tmp_path, train_path=corpus)
    import datamodules.lm as lm

    monkeypatch.setattr(lm, "resolve_tokenizer", lambda *a: pytest.fail("tokenized again"))
    second = data(tmp_path, train_path=corpus)
    assert second.cache_path == first.cache_path and second.streams["val"].dtype == np.uint16
    (tmp_path / "corpus" / "3-third.txt").write_text("changed\n" * 50)
    with pytest.raises(pytest.fail.Exception, match="tokenized again"):
        data(tmp_path, train_path=corpus)  # the corpus changed: a new key


def test_a_bpe_tokenizer_round_trips_and_counts_characters():
    tokenizer = bpe_tokenizer(SENTENCES * 20, vocab_size=300)
    ids = tokenizer.encode(SENTENCES[0])
    assert tokenizer.decode(ids) == SENTENCES[0] and len(ids) < len(SENTENCES[0])
    assert tokenizer.token_chars()[ids].sum() == len(SENTENCES[0])
    again = LMTokenizer.from_json(tokenizer.to_json())
    assert again.encode(SENTENCES[1]).tolist() == tokenizer.encode(SENTENCES[1]).tolist()


def test_a_runs_saved_tokenizer_is_reused_on_another_corpus_without_reading_the_first(tmp_path):
    first = data(tmp_path, tokenizer="bpe", tokenizer_vocab_size=300)
    saved = tmp_path / "tokenizer.json"
    saved.write_text(first.tokenizer.to_json())
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Emma, handsome and clever, seemed in want of a wife.\n" * 40)
    again = LanguageModelDataModule(
        train_path=str(other), tokenizer=str(saved), cache_dir=str(tmp_path / "c2")
    )
    assert again.vocab_size == first.vocab_size and not (tmp_path / "c2").exists()  # no corpus read for it
    again.setup()
    assert (
        decoded(again, "train").startswith("Emma, handsome")
        and again.tokenizer.to_json() == saved.read_text()
    )
    chars = tmp_path / "chars.json"
    chars.write_text(data(tmp_path).tokenizer.to_json())  # a character vocabulary meets a new character
    (other / "a.txt").write_text("Emma said\n" * 37 + "Emma said 42\n" + "Emma said\n" * 2)  # in the test cut
    with pytest.raises(
        DataError, match=r"a.txt:38: character '4' \(U\+0034\) at column 11 is not in the character"
    ):
        LanguageModelDataModule(
            train_path=str(other), tokenizer=str(chars), cache_dir=str(tmp_path / "c3")
        ).setup()
    rows = tmp_path / "rows.jsonl"  # a row's text of several lines: the row, then the line within it
    rows.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["Emma said", "Emma\nsaid", "Emma\nsaid 42"] * 4)
    )
    with pytest.raises(
        DataError, match=r"rows.jsonl: row 3: character '4' .* on line 2 of its text, column 6"
    ):
        LanguageModelDataModule(
            train_path=str(rows), tokenizer=str(chars), cache_dir=str(tmp_path / "c4")
        ).setup()
    foreign = tmp_path / "hf.json"
    foreign.write_text('{"version": "1.0", "model": {}}')
    with pytest.raises(DataError, match=r"data.tokenizer: .*hf.json: not a tokenizer a run saved"):
        _ = LanguageModelDataModule(train_path=str(other), tokenizer=str(foreign)).vocab_size


@pytest.mark.parametrize("net", ["gpt.yaml", "lstm.yaml", "gru.yaml", "rnn.yaml"])
def test_every_language_model_trains_and_reports_bits_per_character(net, in_tmp):
    args = ["--config", str(ROOT / "experiments" / "lm" / net), *lm_args(in_tmp / "corpus")]
    args += TINY_GPT if net == "gpt.yaml" else ["--model.net.init_args.hidden_size=32"]
    cli = ExperimentCLI(args=["fit", *args, "--trainer.fast_dev_run=2", "--trainer.logger=false"])
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"]) if "train/loss" in metrics else 0.0)
    loss, bpc, ppl = (float(metrics[f"val/{k}"]) for k in ("loss", "bpc", "ppl"))
    assert bpc == pytest.approx(loss / math.log(2), rel=1e-5)  # characters: one token each
    assert ppl == pytest.approx(math.exp(loss), rel=1e-5)


def test_generate_continues_a_prompt_from_a_checkpoint_and_refuses_unknown_characters(in_tmp, monkeypatch):
    args = ["--config", str(GPT_YAML), *lm_args(in_tmp / "corpus"), *TINY_GPT]
    run = [
        "fit",
        *args,
        "--trainer.max_steps=3",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={in_tmp / 'run'}",
    ]
    ExperimentCLI(args=run)
    ckpt = next((in_tmp / "run").rglob("last.ckpt"))
    # predict has no step here: said before the data is read or a run folder made (a traceback in the net, and
    # a half-written run folder, before)
    out = in_tmp / "predicted"
    refused = run_main(
        "predict", *args, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={out}", cwd=in_tmp
    )
    assert refused.returncode == 2 and last_line(refused) == (
        "error: predict: LanguageModelTask writes no predictions; use generate (text that follows a prompt) or "
        "test (the loss and perplexity on a split)"
    )
    assert not out.exists()
    shutil.rmtree(in_tmp / "corpus")  # the checkpoint carries the tokenizer: the corpus may be gone
    common = ["generate", "--config", GPT_YAML, *args[2:], "--ckpt", ckpt, "--max_new_tokens=20", "--no_stop"]
    done = run_main(*common, "--prompt", "It is a", cwd=in_tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("It is a") and len(done.stdout.rstrip("\n")) == len("It is a") + 20
    alone = run_main("generate", "--ckpt", ckpt, "--max_new_tokens=5", "--prompt", "It is a", cwd=in_tmp)
    assert alone.returncode == 0 and alone.stdout.startswith("It is a"), alone.stderr[
        -2000:
    ]  # its config.yaml
    bigger = run_main(
        "generate", "--config", GPT_YAML, *args[2:-3], "--ckpt", ckpt, "--prompt", "It", cwd=in_tmp
    )
    assert (
        bigger.returncode == 2 and "does not fit the model that this config and data build" in bigger.stderr
    )
    assert bigger.stderr.strip().endswith(f"(the run's own: --config {in_tmp / 'run' / 'config.yaml'})")
    bad = run_main(*common, "--prompt", "It is 🙂", cwd=in_tmp)
    assert (
        bad.returncode == 2
        and "--prompt: character '🙂' (U+1F642) at position 6 is not in the character vocabulary"
        in bad.stderr
    )
    # a prompt from a Windows file reads as the corpus did (universal newlines); an empty one starts a document
    crlf = run_main(*common, "--prompt", "It is\r\na", cwd=in_tmp)
    assert crlf.returncode == 0 and crlf.stdout.startswith("It is\na"), crlf.stderr[-2000:]
    empty = run_main(*common, "--prompt", "", "--max-new-tokens=7", cwd=in_tmp)  # either spelling
    assert empty.returncode == 0, empty.stderr[-2000:]
    assert len(empty.stdout.replace("<|endoftext|>", "\x03")) == 7 + 1  # 7 characters and the line's end
    # where the model writes the end-of-text token, generation stops there and says so
    import lit_models.generation

    def ends_soon(net, prompt, max_new_tokens, context, temperature, top_k, top_p, stop_id, generator):
        yield from (torch.tensor([[t]]) for t in (prompt[0, 0], prompt[0, 0], stop_id, prompt[0, 0]))

    monkeypatch.setattr(lit_models.generation, "generate", ends_soon)
    stopped = run_main(*common[:-1], "--prompt", "It", cwd=in_tmp)
    assert stopped.returncode == 0 and stopped.stdout == "ItII\n", stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1] == (
        "generate: stopped at the end-of-text token after 2 new token(s) (of --max_new_tokens 20); --no_stop goes "
        "on past it"
    )


def test_generate_refuses_a_checkpoint_of_another_task(in_tmp):
    from conftest import CNN, TINY_DATA

    ExperimentCLI(args=["fit", "--config", CNN, *TINY_DATA, "--trainer.max_steps=1", "--trainer.logger=false",
                        f"--trainer.default_root_dir={in_tmp / 'dna'}"])  # fmt: skip
    ckpt = next((in_tmp / "dna").rglob("last.ckpt"))
    done = run_main("generate", "--config", GPT_YAML, "--ckpt", ckpt, "--prompt", "x", cwd=in_tmp)
    assert done.returncode == 2
    assert (
        "a checkpoint of PredictionTask trained on DNADataModule data, which does not hold a language"
        in done.stderr
    )


def test_generate_with_another_models_config_blames_the_net_not_the_tokenizer_it_substituted(in_tmp):
    """Trial 26: the config of another model said the checkpoint 'was trained on other data (data.tokenizer
    'bpe', this run's '/tmp/tmpk3x9_2ab/tokenizer.json'; ...)': the temporary file generate writes the checkpoint's
    own tokenizer to, which is the checkpoint's tokenizer, not other data."""
    args = ["--config", str(GPT_YAML), *lm_args(in_tmp / "corpus"), "--data.tokenizer=bpe",
            "--data.tokenizer_vocab_size=300", "--trainer.logger=false"]  # fmt: skip
    ExperimentCLI(
        args=["fit", *args, *TINY_GPT, "--trainer.max_steps=1", f"--trainer.default_root_dir={in_tmp / 'a'}"]
    )
    ckpt = next((in_tmp / "a").rglob("last.ckpt"))
    wider = [*TINY_GPT[:1], "--model.net.init_args.n_embd=16", *TINY_GPT[2:]]
    done = run_main("generate", *args, *wider, "--ckpt", ckpt, "--prompt", "It is", cwd=in_tmp)
    assert done.returncode == 2
    said = last_line(done)
    assert "net.wte.weight is [300, 32] there, [300, 16] here" in said, said
    assert "tokenizer" not in said and "trained on other data" not in said, said


def test_bad_corpora_are_named_in_one_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10)
    with pytest.raises(DataError, match=r"latin1.txt: not UTF-8 text: byte 4 \(line 1\) is 0xe9"):
        data(tmp_path, train_path=str(tmp_path / "latin1.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty.txt: the corpus is empty"):
        data(tmp_path, train_path=str(tmp_path / "empty.txt"))
    (tmp_path / "short.txt").write_text("a few words\n" * 3)
    with pytest.raises(DataError, match=r"short.txt: the (train|val|test) split has \d+ tokens, fewer than"):
        data(tmp_path, train_path=str(tmp_path / "short.txt"))
    with pytest.raises(DataError, match="data.train_path: file 'missing.txt' not found"):
        data(tmp_path, train_path="missing.txt")


def test_a_tables_empty_cells_are_no_documents_said_once_and_a_number_is_refused(tmp_path):
    """A CSV's empty cell (read as missing) or "" is no document, the same whether a split is held out or given:
    skipped and counted in one warning with its first row; a column of numbers is refused, with a value."""
    paths = {f"{split}_path": str(tmp_path / f"{split}.csv") for split in ("train", "val", "test")}
    Path(paths["train_path"]).write_text(
        "text,note\n" + "".join(f'"{SENTENCES[0]} {i}",x\n' for i in range(8)) + ",empty\n" + ",\n"
    )
    for k, split in ((1, "val"), (2, "test")):
        Path(paths[f"{split}_path"]).write_text(
            "text\n" + "".join(f'"{SENTENCES[k]} {i}"\n' for i in range(8)) + '""\n'
        )
    with pytest.warns(
        UserWarning, match=r"train.csv: 2 row\(s\) with column 'text' empty or missing \(first: row 9\)"
    ):
        module = data(tmp_path, **paths)
    for split in ("train", "val", "test"):  # one end-of-text per row that holds text
        assert (np.asarray(module.streams[split]) == module.tokenizer.eot_id).sum() == 8
    with pytest.warns(
        UserWarning, match=r"train.csv: 2 row\(s\) with column 'text' empty or missing \(first: row 9\)"
    ):
        held = data(tmp_path / "held", train_path=paths["train_path"], val_fraction=0.2, test_fraction=0.2)
    assert sum(int((np.asarray(held.streams[s]) == held.tokenizer.eot_id).sum()) for s in held.streams) == 8
    (tmp_path / "numbers.csv").write_text("text\n41\n42\n")
    with pytest.raises(DataError, match=r"numbers.csv: row 1: column 'text' is not text \(41\)"):
        data(tmp_path / "n", **{**paths, "train_path": str(tmp_path / "numbers.csv")})


def test_a_tokenizer_that_does_not_fit_pretrained_weights_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lit_models.gpt import GPT

    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    kwargs = dict(preset=None, n_layer=1, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64, norm="rmsnorm",
                  mlp="swiglu", positions="rotary", bias=False, rope_base=10000.0, block_size=64, tie_embeddings=False,
                  norm_eps=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match=r"the data's tokenizer has 82 tokens, the embedding of .* has 50"):
        GPT(vocab_size=82, seq_len=16, weights=str(tmp_path / "llama"), **kwargs)
    net = GPT(vocab_size=50, seq_len=16, weights=str(tmp_path / "llama"), **kwargs)
    theirs = LlamaForCausalLM.from_pretrained(tmp_path / "llama").eval()
    x = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), theirs(x).logits, atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["vocab_size"] == 50


def test_samples_of_fixed_prompts_reach_w_and_b_and_the_run_folder(in_tmp):
    from wandb_offline import find_runs, read_run

    from experiments.loggers import AutoWandbLogger

    args = ["--config", str(GPT_YAML), *lm_args(in_tmp / "corpus"), *TINY_GPT, "--trainer.max_steps=4"]
    args += [
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]
    args += [
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir=logs",
    ]
    said = r"character '🙂'.*no samples for this prompt \(give your own after the config: --trainer.callbacks.prompts="
    with pytest.warns(UserWarning, match=said):
        prompts = ["--trainer.callbacks=null", "--config", "trainer: {callbacks+: [{class_path: experiments.samples.TextSamples, "
                   "init_args: {prompts: [It is a, Emma, 🙂], max_new_tokens: 5}}]}\n"]  # fmt: skip
        cli = ExperimentCLI(args=[*args, *prompts], run=False)
        wandb_logger = AutoWandbLogger(save_dir=str(in_tmp / "wb"), project="samples-test")
        cli.trainer.loggers = [*cli.trainer.loggers, wandb_logger]
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        wandb_logger.experiment.finish()
    rows = [json.loads(line) for line in next(in_tmp.rglob("samples.jsonl")).read_text().splitlines()]
    assert [(r["step"], r["prompt"]) for r in rows] == [
        (2, "It is a"),
        (2, "Emma"),
        (4, "It is a"),
        (4, "Emma"),
    ]
    assert all(len(r["text"]) == 5 for r in rows)  # characters: one per token
    (run_file,) = find_runs(in_tmp / "wb")
    tables = [h for h in read_run(run_file)["history"] if h.get("val/samples/_type") == "table-file"]
    assert len(tables) == 2 and tables[-1]["val/samples/nrows"] == 4


@pytest.mark.slow  # inductor compiles for 40 s on 2 cores (make test-all); test_models keeps a compile parity test
def test_compile_fuses_the_loss_with_the_net_and_keeps_the_eager_loss_and_gradients():
    """--model.compile true on a language model compiles the net and the cross-entropy as one graph (inductor,
    on the CPU here): one step's loss and gradients equal the eager task's; parameter names are unchanged."""
    from lit_models import LanguageModelTask
    from lit_models.gpt import GPT

    def task(**kwargs):
        torch.manual_seed(0)
        net = GPT(vocab_size=50, seq_len=12, preset=None, n_layer=1, n_head=2, n_embd=16)
        return LanguageModelTask(net, num_outputs=50, **kwargs)

    compiled, eager = task(compile=True), task()
    compiled.setup("fit")
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    y = torch.cat([x[:, 1:], torch.full((3, 1), -100)], dim=1)  # the last position has no target
    y[2, 7:] = -100  # a short window, as the data's last one
    batch = {"x": x, "y": y, "lengths": torch.tensor([11, 11, 7])}
    wrapped = compiled._compiled["nll"].__wrapped__  # torch.compile's wrapper of net + loss
    assert wrapped == compiled._summed_nll
    import copy

    assert copy.deepcopy(compiled)._compiled == {}  # a copy runs eagerly, never the original's graph
    assert_same_step(compiled, eager, batch)


def test_a_net_that_pools_to_one_output_is_refused_as_a_language_model():
    from lit_models import LanguageModelTask, RecurrentNet

    with pytest.raises(
        ValueError, match=r"model.net: RecurrentNet with pooling 'last' gives one output per sequence"
    ):
        LanguageModelTask(RecurrentNet(0, 30, cell="gru", hidden_size=8, vocab_size=30), num_outputs=30)
    LanguageModelTask(
        RecurrentNet(0, 30, cell="gru", hidden_size=8, vocab_size=30, pooling="none"), num_outputs=30
    )


def test_generated_text_shows_the_end_of_text_token_by_name_and_stops_there_unless_told(in_tmp):
    from datamodules.lm_tokenize import bpe_tokenizer, char_tokenizer, text_pieces

    chars = char_tokenizer(["ab c"])
    ids = [*chars.encode("ab"), chars.eot_id, *chars.encode("c a")]
    assert "".join(text_pieces(ids, chars, stop=chars.eot_id)) == "ab"
    assert "".join(text_pieces(ids, chars, stop=None)) == "ab<|endoftext|>c a"  # not a raw \x03
    bpe = bpe_tokenizer(["naïve café résumé " * 20], 300)
    ids = [*bpe.encode("café"), bpe.eot_id, *bpe.encode("naïve")]
    pieces = list(text_pieces(ids, bpe, stop=None))
    assert "".join(pieces) == "café<|endoftext|>naïve" and not any("\ufffd" in p for p in pieces)
    # trial 26: a WordPiece continuation decoded alone lost the space after the prompt ("The cat satthe")
    from text_data import reviews, tiny_bert

    from datamodules.lm_tokenize import pretrained_lm_tokenizer

    texts = [t for t, _ in reviews(50)]
    wordpiece = pretrained_lm_tokenizer(str(tiny_bert(in_tmp / "bert", texts)))
    words = texts[0].lower().split()[:4]
    prompt, more = wordpiece.encode(" ".join(words[:2])), wordpiece.encode(" ".join(words[2:]))
    assert "".join(text_pieces(more, wordpiece, stop=None, prompt=prompt)) == " " + " ".join(words[2:])


def test_a_bpe_vocabulary_below_its_bytes_is_said(tmp_path):
    with pytest.warns(UserWarning, match=r"^data.tokenizer_vocab_size: 100 is below a byte-level BPE's 257 base "
                                         r"tokens \(256 bytes and 1 special\), so the tokenizer has 257; give at least "
                                         r"that, or data.tokenizer char"):  # fmt: skip
        module = data(tmp_path, tokenizer="bpe", tokenizer_vocab_size=100)
    assert module.vocab_size == 257


def test_a_corpus_folder_reads_its_text_files_and_names_what_it_leaves(tmp_path):
    folder = tiny_corpus(tmp_path / "corpus")
    (folder / "paper.pdf").write_bytes(b"%PDF-1.4 not text")
    (folder / "drafts").mkdir()
    (folder / ".DS_Store").write_bytes(b"\0\0")  # hidden: not worth a word
    with pytest.warns(
        UserWarning,
        match=r"data.train_path: folder '.*corpus': 2 of its entries are not read, only text files \(.txt, .md, "
        r".text\) directly in it are: drafts, paper.pdf$",
    ):
        module = data(tmp_path, train_path=str(folder))
    read = decoded(module, "train") + decoded(module, "val") + decoded(module, "test")
    assert "PDF" not in read and SENTENCES[0][:20] in read


def test_init_from_a_checkpoint_of_other_data_names_the_data(in_tmp):
    """A character vocabulary is the corpus's: weights of another corpus do not fit, and the refusal says that
    the data differs, not only which shapes do."""
    args = ["--config", str(GPT_YAML), *lm_args(in_tmp / "corpus"), *TINY_GPT, "--trainer.logger=false"]
    run = in_tmp / "run"
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=1", f"--trainer.default_root_dir={run}"])
    ckpt = next(run.rglob("last.ckpt"))
    other = in_tmp / "other"
    other.mkdir()
    (other / "z.txt").write_text("Zebras, quietly: xylophones & jazz!\n" * 40)
    result = run_main("fit", *args, f"--data.train_path={other}", f"--model.init_from={ckpt}",
                      f"--trainer.default_root_dir={in_tmp / 'refused'}", cwd=in_tmp)  # fmt: skip
    assert result.returncode == 2
    said = last_line(result)
    # the vocabularies compared before the shapes: which ids differ, not only which shapes do
    assert re.search(r"was trained on data tokenized by 'char', this data by 'char' \(data.tokenizer\), and \d+ of "
                     r"the [\d,]+ ids both have mean other tokens \(id \d+ is '.' there, '.' here", said), said  # fmt: skip
    assert said.endswith(f"; the checkpoint was trained on other data (data.train_path '{in_tmp / 'corpus'}', "
                         f"this run's '{other}')")  # fmt: skip
    assert not (in_tmp / "refused").exists()


def test_testing_a_bpe_run_on_a_file_of_its_own_takes_the_checkpoints_tokenizer(in_tmp):
    """Trial 26: a test_path of its own changes the training split a BPE is trained on again, so the run's config
    refused its own checkpoint ("use the data config the checkpoint was trained with", which it was). ``test``
    with a data.test_path now takes the tokenizer from the checkpoint (data.checkpoint, as the text classifier's
    data does) and reads that file alone: the training corpus need not exist."""
    args = ["--config", str(GPT_YAML), *lm_args(in_tmp / "corpus"), *TINY_GPT, "--data.tokenizer=bpe",
            "--data.tokenizer_vocab_size=300"]  # fmt: skip
    run = in_tmp / "run"
    logged = [
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={run}",
    ]
    ExperimentCLI(args=["fit", *args, "--trainer.max_steps=1", *logged])
    ckpt = next(run.rglob("last.ckpt"))
    mine = in_tmp / "mine.txt"
    mine.write_text("It is a truth universally acknowledged, that a single man.\n" * 20)
    (in_tmp / "corpus").rename(in_tmp / "gone")  # the training files are not read
    result = run_main("test", *args, f"--ckpt_path={ckpt}", f"--data.test_path={mine}", "--trainer.logger=false",
                      cwd=in_tmp)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"the data as the model was trained (class names, tokenizer, sizes, statistics) from {ckpt}" in (
        result.stdout
    )
    trained = json.loads(torch.load(ckpt, weights_only=False)["LanguageModelDataModule"]["tokenizer"])
    saved = json.loads((ckpt.parent.parent / "tokenizer.json").read_text())
    assert trained == saved
    assert re.search(r"test/loss\s+│\s+\d", result.stdout)
    # what it tested: the file alone, in the run's tokens (and its end-of-text token)
    data = LanguageModelDataModule(
        test_path=str(mine), checkpoint=str(ckpt), tokenizer="bpe", context_length=16
    )
    data.setup("test")
    tokens = LMTokenizer.from_saved(saved).encode(mine.read_text(), str(mine))
    assert data.streams["test"].tolist() == [*tokens, data.tokenizer.eot_id]
    assert len(data.streams["train"]) == len(data.streams["val"]) == 0


def test_generate_from_weights_that_do_not_convert_is_one_line_before_transformers_loads_them(
    in_tmp, monkeypatch
):
    """Trial 26: a BERT folder given to generate printed transformers' 'This checkpoint seem corrupted' and a load
    report of some 20 lines before the one-line refusal; its kind is read from config.json first now, and the
    weights are never loaded."""
    import transformers
    from text_data import reviews, tiny_bert

    def never(*args, **kwargs):
        raise AssertionError("loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    folder = tiny_bert(in_tmp / "bert", [t for t, _ in reviews(50)])
    result = run_main("generate", "--weights", folder, "--prompt", "Hi", cwd=in_tmp)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: weights of a 'bert' model: only Llama and GPT-2 models convert"


def test_a_misspelt_tokenizer_or_text_column_gets_the_close_name(tmp_path):
    """Trial 26: 'chars' went on to the Hub (offline: a connection error) and 'Body' listed the columns only."""
    with pytest.raises(
        DataError, match=r"^data.tokenizer: 'chars' is not char or bpe \(did you mean 'char'\?\)"
    ):
        data(tmp_path, tokenizer="chars")
    # trial 28: the text classifier's 'wordpiece' went on to the Hub too
    with pytest.raises(DataError, match=r"^data.tokenizer: 'wordpiece' is a tokenizer of the text classifier's or "
                                        r"seq2seq data, not a language model's: char, bpe, "):  # fmt: skip
        data(tmp_path, tokenizer="wordpiece")
    table = tmp_path / "docs.csv"
    table.write_text(
        "id,body\n" + "".join(f"{i},It is a truth universally acknowledged {i}.\n" for i in range(40))
    )
    with pytest.raises(DataError, match=r"docs.csv: no column 'Body' \(data.text_column; columns: id, body\); did "
                       r"you mean 'body'\?$"):  # fmt: skip
        data(tmp_path, train_path=str(table), text_column="Body", tokenizer="char")
