"""Small text datasets and a tiny BERT for the text tests, written to a folder the test owns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

TEXT = Path(__file__).resolve().parents[1] / "experiments" / "text"

POSITIVE = ["great", "moving", "brilliant", "funny", "warm", "sharp", "lovely"]
NEGATIVE = ["dull", "awful", "tedious", "bland", "messy", "boring", "flat"]
FILLER = ["the", "film", "plot", "cast", "story", "is", "was", "and", "a", "movie", "really", "quite"]


def reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs of 3..12 words whose label is carried by one sentiment word."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 12))))
        words.insert(
            int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if label == "fresh" else NEGATIVE))
        )
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple], columns=("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tiny_bert(folder: Path, texts: list[str], masked: bool = False) -> Path:
    """A randomly initialised 2-layer BERT and a WordPiece tokenizer trained on ``texts``, saved as
    ``from_pretrained`` folders expect (config.json, model.safetensors, tokenizer.json, ...); ``masked``: a
    ``BertForMaskedLM`` (with its head) and a ``[MASK]`` token.
    """
    from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerFast

    from datamodules.text_tokenize import train_tokenizer

    backend = train_tokenizer("wordpiece", [texts], vocab_size=120)
    extra = {}
    if masked:
        backend.add_special_tokens(["[MASK]"])
        extra["mask_token"] = "[MASK]"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        **extra,
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=backend.get_vocab_size(with_added_tokens=True),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=128,
    )
    if masked:
        BertForMaskedLM(config).save_pretrained(folder)
    else:
        BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def text_args(tmp_path, *model_files, tokenizer="wordpiece"):
    rows = reviews(120)
    train = write_csv(tmp_path / "d" / "train.csv", rows[:80])
    val = write_csv(tmp_path / "d" / "val.csv", rows[80:100])
    test = write_csv(tmp_path / "d" / "test.csv", rows[100:])
    args = ["--config", str(TEXT / "rotten_tomatoes.yaml")]
    for f in model_files:
        args += ["--config", str(f)]
    return args + [
        f"--data.train_path={train}",
        f"--data.val_path={val}",
        f"--data.test_path={test}",
        f"--data.tokenizer={tokenizer}",
        f"--data.tokenizer_vocab_size={260 if tokenizer == 'bpe' else 150}",  # a byte-level BPE: 256 bytes + 4
        "--data.batch_size=16",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        "--trainer.enable_progress_bar=false",
    ]
