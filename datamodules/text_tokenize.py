"""Tokenizers and tokenized splits: a ``transformers`` fast tokenizer (hub name or local folder) or a
WordPiece/BPE one trained with ``tokenizers``, and the token ids of a split written to disk batch by batch as
a memory-mappable store (``ids.npy``, ``offsets.npy``, ``labels.npy``)."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from tokenizers import Tokenizer

from archbench.errors import DataError, first_line
from datamodules.files import not_found, saved_json
from datamodules.storage import StoreWriter
from datamodules.text_sources import label_key, offline

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
TOKENIZED_FILES = ("ids.npy", "offsets.npy", "labels.npy")


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrained_tokenizer(name: str) -> Tokenizer:
    """The Rust tokenizer of a ``transformers`` AutoTokenizer (hub name or local folder), padding token set; or a
    ``tokenizers`` JSON file as a run saved it (``tokenizer.json``)."""
    from transformers import AutoTokenizer

    saved = saved_json(name, "data.tokenizer", "a run's tokenizer.json")
    if saved is not None:  # a run's tokenizer.json: as it was saved
        try:
            return Tokenizer.from_str(json.dumps(saved))
        except Exception as err:  # tokenizers raises a bare Exception on JSON it cannot read as a tokenizer
            raise DataError(
                f"data.tokenizer: {name}: not a tokenizers JSON file ({first_line(err)})"
            ) from None
    if not Path(name).exists() and (name.startswith(("/", ".", "~")) or name.count("/") > 1):
        # a path (a hub name is NAME or ORG/NAME): not looked up on the hub, which would say "Repo id must be ..."
        raise DataError(not_found("data.tokenizer", name).replace(": file ", ": folder ", 1))
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        where = "a local folder" if Path(name).exists() else "a hub name"
        hint = (
            " This machine is offline: give a local folder." if offline() and not Path(name).exists() else ""
        )
        close = difflib.get_close_matches(name, ["bpe", "wordpiece"], n=1, cutoff=0.6)
        hint += f" Did you mean {close[0]!r} (a tokenizer trained on the training split)?" if close else ""
        raise DataError(
            f"data.tokenizer: {name!r} ({where}) could not be loaded as a tokenizer: "
            f"{first_line(err).rstrip('.')}.{hint}"
        ) from None
    if not tokenizer.is_fast:
        raise DataError(f"data.tokenizer: {name!r} has no fast (Rust) tokenizer")
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    if tokenizer.pad_token_id is not None:
        backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend


def check_bpe_size(
    vocab_size: int, specials: int, instead: str, option: str = "data.tokenizer_vocab_size"
) -> None:
    """A byte-level BPE starts from its 256 bytes and the special tokens: a smaller vocabulary (``option``) cannot
    be met, and ``tokenizers`` trains the minimum without a word, so this says it. A warning, not a refusal: runs
    saved with such a size (their tokenizer has the minimum) load and resume as they did."""
    if vocab_size < 256 + specials:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(
            f"{option}: {vocab_size} is below a byte-level BPE's {256 + specials} base tokens (256 bytes and "
            f"{specials} special), so the tokenizer has {256 + specials}; give at least that, or {instead}"
        )


def train_tokenizer(kind: str, texts, vocab_size: int, length: int | None = None) -> Tokenizer:
    """A WordPiece (BERT-style, lower-cased) or byte-level BPE tokenizer trained on ``texts`` (batches)."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL)
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def cached_tokenizer(
    path: Path, kind: str, vocab_size: int, train, column: str, count=lambda n: None
) -> Tokenizer:
    """A ``kind`` tokenizer trained on the training split (``text_sources.Split``) once, kept at ``path``
    (behind a file lock: one process trains, the others read)."""
    from filelock import FileLock

    from datamodules.files import write_atomic
    from datamodules.text_sources import check_texts, text_batches

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            check_texts(train, column)
            tokenizer = train_tokenizer(kind, text_batches(train.data, column), vocab_size, len(train.data))
            count(len(train.data))
            write_atomic(path, tokenizer.to_str().encode())
    return Tokenizer.from_file(str(path))


def write_tokenized(data: datasets.Dataset, folder: Path, batch_size: int = 10_000) -> int:
    """A tokenized split (``input_ids``, ``label``) as a store folder, written a batch at a time (memory does
    not grow with the data). Returns the number of rows."""
    writer = StoreWriter(folder, np.int32, np.int64, TOKENIZED_FILES)
    try:
        for batch in data.with_format("arrow").iter(batch_size=batch_size):
            column = batch.column("input_ids")
            labels = batch.column("label").to_numpy()
            done = 0
            for chunk in column.chunks:
                lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False).astype(np.int64)
                ids = chunk.flatten().to_numpy(zero_copy_only=False)
                writer.append(ids, lengths, labels[done : done + len(lengths)])
                done += len(lengths)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    return writer.rows


def tokenize_splits(splits: dict, tokenizer, labels: list[str], text_column: str, label_column: str, folder: Path,
                    count=lambda n: None) -> tuple[dict[str, int], dict[str, int]]:  # fmt: skip
    """Check and tokenize every split (``text_sources.Split``) into ``folder/<split>`` as token stores, a batch
    at a time through a scratch Arrow file (never a whole split in memory); ``count(n)`` hears of every ``n``
    texts given to the tokenizer. Returns the rows of each split, and how many of them the tokenizer cut at its
    truncation length."""
    from datamodules.text_sources import check_labels, check_texts

    ids = {label_key(name): i for i, name in enumerate(labels)}  # values and names matched alike
    counts, truncated = {}, {}
    for name, split in splits.items():
        truncated[name] = 0
        check_texts(split, text_column)
        labelled = name != "predict"  # a predict file's labels, if any, are passed through, never read
        if labelled:
            check_labels(split, label_column, ids)

        def encode(batch: dict, labelled: bool = labelled, name: str = name) -> dict:
            count(len(batch[text_column]))
            encodings = tokenizer.encode_batch(batch[text_column])
            truncated[name] += sum(1 for e in encodings if e.overflowing)
            label = [ids[label_key(v)] for v in batch[label_column]] if labelled else [-1] * len(encodings)
            return {"input_ids": [e.ids for e in encodings], "label": label}

        scratch = folder / f"{name}.tokenizing.arrow"
        tokenized = split.data.map(
            encode,
            batched=True,
            batch_size=2000,
            remove_columns=split.data.column_names,
            features=datasets.Features(
                {"input_ids": datasets.Sequence(datasets.Value("int32")), "label": datasets.Value("int64")}
            ),
            new_fingerprint=digest(str(folder), name),
            load_from_cache_file=False,
            cache_file_name=str(scratch),
            desc=f"tokenizing {name} ({split.source})",
        )
        counts[name] = write_tokenized(tokenized, folder / name)
        del tokenized
        scratch.unlink(missing_ok=True)
    return counts, truncated
