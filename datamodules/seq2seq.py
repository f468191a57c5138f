"""Sequence pairs (a source and a target sequence of symbols) for sequence-to-sequence models: grapheme-to-phoneme
on CMUdict (``python -m experiments data cmudict``), transliteration, any pairs in a file.

Pairs come from TSV / CSV / JSON Lines files (one per split; validation and test may be held out of the training
file by a seeded split of its distinct sources). Each side has its tokenizer: ``char`` (every character a
symbol) or ``symbols`` (whitespace-separated symbols, such as phonemes). The vocabularies come from the training
split, sorted, so they are the same on every machine and process: ids 0-3 are ``<pad> <bos> <eos> <unk>``.
A source character never seen in training reads as ``<unk>``; a target symbol never seen in training cannot be
predicted, so it stops the run naming its file, line and value.

Validation and test group the pairs by source: a word with two pronunciations is one example with two
references, and a prediction is right when it matches either (as G2P results on CMUdict are counted); the
loss there reads the first reference.

A batch: ``x`` (B, S) source ids, zero-padded; ``lengths`` (B,); ``target`` (B, T) ``<bos> ... <eos>`` ids,
zero-padded; ``target_lengths`` (B,) with both markers; ``references``: per example, the id lists of its
references (without markers).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.sampling import SplitLoaders, check_loader_options, make_loader

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
Tokenizer = Literal["char", "symbols"]


def split_symbols(text: str, tokenizer: Tokenizer) -> list[str]:
    return list(text) if tokenizer == "char" else text.split()


def read_pairs(path: str, source_column: str, target_column: str, field: str) -> pd.DataFrame:
    """A pair file as a frame of ``source``, ``target`` strings and the ``line`` each came from. Empty sources or
    targets, missing columns and unreadable files stop with the file, line and column."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data.{field}: {path!r} is not a file")
    suffix = file.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            frame = pd.read_json(file, lines=True, dtype=False)
            first_line = 1
        elif suffix in (".tsv", ".csv", ".txt"):
            sep = "," if suffix == ".csv" else "\t"
            frame = pd.read_csv(
                file, sep=sep, dtype=str, keep_default_na=False, quoting=3 if sep == "\t" else 0
            )
            first_line = 2  # after the header
        else:
            raise DataError(f"data.{field}: {path}: unknown pair format {suffix!r} (.tsv, .csv or .jsonl)")
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(
            f"data.{field}: {path}: not a readable {suffix[1:]} file: {str(err).splitlines()[0]}"
        ) from None
    for name, column in (("source_column", source_column), ("target_column", target_column)):
        if column not in frame.columns:
            raise DataError(
                f"{path}: no column {column!r} (data.{name}); the file has {', '.join(map(str, frame.columns))}"
            )
    pairs = pd.DataFrame({
        "source": frame[source_column].astype(str).where(frame[source_column].notna(), ""),
        "target": frame[target_column].astype(str).where(frame[target_column].notna(), ""),
        "line": np.arange(len(frame)) + first_line,
    })  # fmt: skip
    for side, column in (("source", source_column), ("target", target_column)):
        empty = pairs[side].str.strip() == ""
        if empty.any():
            row = pairs[empty].iloc[0]
            raise DataError(
                f"{path}:{row.line}: {column} is empty (source {row.source!r}, target {row.target!r})"
            )
    return pairs


class Vocabulary:
    """Symbols <-> ids: the four specials, then the training split's symbols, sorted."""

    def __init__(self, symbols: set[str]):
        self.symbols = list(SPECIALS) + sorted(symbols - set(SPECIALS))
        self.ids = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, symbols: list[str]) -> list[int]:
        return [self.ids.get(s, UNK) for s in symbols]

    def decode(self, ids) -> list[str]:
        return [self.symbols[i] for i in ids if i not in (PAD, BOS, EOS)]


class PairSplit(Dataset):
    """Encoded pairs; with ``group``, one example per distinct source holding all its targets."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], group: bool):
        if group:
            order: dict[tuple, list[list[int]]] = {}
            for source, target in zip(sources, targets, strict=True):
                order.setdefault(tuple(source), []).append(target)
            self.sources = [list(s) for s in order]
            self.references = list(order.values())
        else:
            self.sources, self.references = sources, [[t] for t in targets]
        self.lengths = np.array([len(s) for s in self.sources], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[list[int], list[list[int]]]:
        return self.sources[i], self.references[i]


def collate_pairs(items: list[tuple[list[int], list[list[int]]]]) -> dict:
    lengths = torch.tensor([len(s) for s, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
    targets = [[BOS, *refs[0], EOS] for _, refs in items]
    target_lengths = torch.tensor([len(t) for t in targets])
    target = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.long)
    for row, ((source, _), t) in enumerate(zip(items, targets, strict=True)):
        x[row, : len(source)] = torch.tensor(source)
        target[row, : len(t)] = torch.tensor(t)
    return {"x": x, "lengths": lengths, "target": target, "target_lengths": target_lengths,
            "references": [refs for _, refs in items]}  # fmt: skip


class Seq2SeqDataModule(SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        train_path: str = "data/cmudict/train.tsv",
        val_path: str | None = "data/cmudict/val.tsv",
        test_path: str | None = "data/cmudict/test.tsv",
        source_column: str = "word",
        target_column: str = "phonemes",
        source_tokenizer: Tokenizer = "char",
        target_tokenizer: Tokenizer = "symbols",
        lowercase: bool = False,
        max_train_pairs: int | None = None,
        bucket_by_length: bool = True,
        batch_size: int = 64,
        global_batch_size: int | None = None,
        num_workers: int = 0,
    ):
        """
        Args:
            train_path: Pairs to train on: ``.tsv``, ``.csv`` or ``.jsonl`` with a header / keys naming the columns.
            val_path: Validation pairs (same format).
            test_path: Test pairs (same format).
            source_column: The column holding the source sequence.
            target_column: The column holding the target sequence.
            source_tokenizer: ``char`` (each character a symbol) or ``symbols`` (whitespace-separated).
            target_tokenizer: ``char`` or ``symbols`` (CMUdict's phonemes with their stress digits).
            lowercase: Lower-case the sources before tokenizing.
            max_train_pairs: Train on the first this many pairs of a seeded shuffle only (a smaller budget);
                empty: all.
            bucket_by_length: Batch training pairs of similar source length together (less padding).
            batch_size: Pairs per batch and process.
            global_batch_size: Pairs per optimizer step over all processes (instead of ``batch_size``).
            num_workers: DataLoader worker processes.
        """
        super().__init__()
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        for name in ("source_tokenizer", "target_tokenizer"):
            if getattr(self.hparams, name) not in ("char", "symbols"):
                raise DataError(f"data.{name}: {getattr(self.hparams, name)!r} is not char or symbols")
        if max_train_pairs is not None and max_train_pairs < 1:
            raise DataError(f"data.max_train_pairs: {max_train_pairs} is not a positive number of pairs")
        if not val_path or not test_path:
            raise DataError("data.val_path and data.test_path: both splits are needed (pair files)")
        self.splits: dict[str, PairSplit] = {}
        self.source_vocab: Vocabulary | None = None
        self.target_vocab: Vocabulary | None = None

    task = "seq2seq"
    in_channels = 0

    @property
    def vocab_size(self) -> int:
        self._build_vocabularies()
        return len(self.source_vocab)

    @property
    def target_vocab_size(self) -> int:
        self._build_vocabularies()
        return len(self.target_vocab)

    @property
    def num_outputs(self) -> int:
        return self.target_vocab_size

    def _source_symbols(self, text: str) -> list[str]:
        return split_symbols(text.lower() if self.hparams.lowercase else text, self.hparams.source_tokenizer)

    def _read(self, split: str) -> pd.DataFrame:
        h = self.hparams
        return read_pairs(h[f"{split}_path"], h.source_column, h.target_column, f"{split}_path")

    def _build_vocabularies(self) -> None:
        if self.source_vocab is not None:
            return
        train = self._read("train")
        self._train_pairs = train
        sources, targets = set(), set()
        for text in train["source"]:
            sources.update(self._source_symbols(text))
        for text in train["target"]:
            targets.update(split_symbols(text, self.hparams.target_tokenizer))
        self.source_vocab, self.target_vocab = Vocabulary(sources), Vocabulary(targets)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self._build_vocabularies()
        h = self.hparams
        for split in ("train", "val", "test"):
            pairs = self._train_pairs if split == "train" else self._read(split)
            if split == "train" and h.max_train_pairs is not None and h.max_train_pairs < len(pairs):
                keep = np.sort(np.random.default_rng(0).permutation(len(pairs))[: h.max_train_pairs])
                pairs = pairs.iloc[keep]
            sources = [self.source_vocab.encode(self._source_symbols(s)) for s in pairs["source"]]
            unknown = sum(i == UNK for s in sources for i in s)
            if unknown:
                warnings.warn(f"data.{split}_path: {unknown} source characters never seen in training read as <unk>",
                              stacklevel=1)  # fmt: skip
            targets = []
            for text, line in zip(pairs["target"], pairs["line"], strict=True):
                symbols = split_symbols(text, h.target_tokenizer)
                ids = self.target_vocab.encode(symbols)
                if UNK in ids:
                    bad = symbols[ids.index(UNK)]
                    raise DataError(
                        f"{h[f'{split}_path']}:{line}: target symbol {bad!r} never occurs in the training split "
                        f"({h.train_path}): the model cannot predict it"
                    )
                targets.append(ids)
            self.splits[split] = PairSplit(sources, targets, group=split != "train")

    def encode_sources(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Sources typed by a user (``align --text``) as a batch: ``x``, ``lengths``, and their symbols."""
        self._build_vocabularies()
        symbols = [self._source_symbols(t) for t in texts]
        empty = [t for t, s in zip(texts, symbols, strict=True) if not s]
        if empty:
            raise DataError(f"--text: {empty[0]!r} has no symbols to read")
        batch = collate_pairs([(self.source_vocab.encode(s), [[]]) for s in symbols])
        return {"x": batch["x"], "lengths": batch["lengths"], "symbols": symbols}

    def state_dict(self) -> dict:
        """The vocabularies, kept in every checkpoint: a model is only read with the ids it was trained on."""
        self._build_vocabularies()
        return {"source_symbols": self.source_vocab.symbols, "target_symbols": self.target_vocab.symbols}

    def load_state_dict(self, state: dict) -> None:
        self._build_vocabularies()
        for side in ("source", "target"):
            saved, ours = state[f"{side}_symbols"], getattr(self, f"{side}_vocab").symbols
            if saved != ours:
                raise DataError(
                    f"data.train_path: the checkpoint's {side} vocabulary ({len(saved)} symbols) is not this data's "
                    f"({len(ours)}): read it with the training data it was trained on"
                )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        self.setup()
        data = self.splits[split]
        return make_loader(data, self.hparams, self.trainer, train, lengths=lambda rows: data.lengths[rows],
                           collate_fn=collate_pairs)  # fmt: skip
