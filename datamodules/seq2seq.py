"""Sequence pairs (a source and a target sequence of symbols) for sequence-to-sequence models: grapheme-to-phoneme
on CMUdict (``python -m experiments data cmudict``), transliteration, any pairs in a file.

Pairs come from TSV / CSV / JSON Lines files (one per split), or from a ``datasets`` dataset (a Hub name online,
or a local folder of split files) with train / validation / test splits. Each side has its tokenizer: ``char``
(every character a symbol), ``symbols`` (whitespace-separated symbols, such as phonemes), ``bpe`` (a byte-level
BPE trained on that side of the training split) or a Hugging Face tokenizer (a folder, or a Hub name online).
Ids 0-3 are ``<pad> <bos> <eos> <unk>`` on every side; a subword tokenizer's own ids follow them. The ``char``
and ``symbols`` vocabularies come from the training split, sorted, so they are the same on every machine and
process. A source character never seen in training reads as ``<unk>`` (with a warning naming it); a target
symbol never seen in training cannot be predicted, so it stops the run naming its file, line and value, as do
an empty split, an empty field, a value that is not a string, a line break inside a field and bytes that are
not UTF-8. ``longest`` holds each split's longest source and target, for the task to check against its net.

Validation and test group the pairs by source: a word with two pronunciations is one example with two
references, and a prediction is right when it matches either (as G2P results on CMUdict are counted); the
loss there reads the first reference. ``predict`` reads every test pair, one example each, in the file's order,
or with ``predict_path`` a file of sources alone (its target column, where it has one, passed through unread).
Every checkpoint holds both vocabularies: ``predict`` and ``test`` from one (``--ckpt_path``, which sets
``data.checkpoint``) read only the file they score or write, not the training files.

A batch: ``x`` (B, S) source ids, zero-padded; ``lengths`` (B,); ``target`` (B, T) ``<bos> ... <eos>`` ids,
zero-padded; ``target_lengths`` (B,) with both markers; ``references``: per example, the id lists of its
references (without markers).
"""

from __future__ import annotations

import difflib
import json
import unicodedata
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.files import not_utf8, saved_json
from datamodules.sampling import SplitLoaders, check_loader_options, make_loader
from datamodules.storage import say_shared
from datamodules.text_sources import read_table
from datamodules.text_tokenize import check_bpe_size

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
SYMBOL_TOKENIZERS = ("char", "symbols")
HUB_SPLITS = {"train": ("train",), "val": ("validation", "valid", "dev"), "test": ("test",)}


def split_symbols(text: str, tokenizer: str) -> list[str]:
    return list(text) if tokenizer == "char" else text.split()


def read_pairs(
    path: str, source_column: str, target_column: str, field: str, sources_only: bool = False
) -> pd.DataFrame:
    """A pair file as a frame of ``source``, ``target`` strings and the ``line`` each came from. Empty sources or
    targets, values that are not strings, missing columns, bytes that are not UTF-8 and unreadable files stop
    with the file, line and column. ``sources_only`` (a file to predict): the target column may be missing
    (``target`` is then None) and is passed through as written, never checked."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data.{field}: {path!r} is not a file")
    suffix = file.suffix.lower()
    if suffix not in (".jsonl", ".json", ".tsv", ".csv", ".txt"):
        raise DataError(f"data.{field}: {path}: unknown pair format {suffix!r} (.tsv, .csv or .jsonl)")
    try:
        if suffix in (".jsonl", ".json"):
            # a file to predict needs its sources alone: a record without a target is passed through empty
            needed = (source_column,) if sources_only else (source_column, target_column)
            frame, lines = read_json_lines(file, needed)
        else:
            frame, lines = read_table(file, "," if suffix == ".csv" else "\t")
    except UnicodeDecodeError:
        raise DataError(not_utf8(file)) from None
    return pair_frame(frame, source_column, target_column, path, lines, sources_only)


def read_json_lines(file: Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame, np.ndarray]:
    """JSON Lines, one object a line (blank lines skipped but counted), values as they are (strings checked by
    ``pair_frame``), and the line of each. An object without one of ``columns`` that others have stops naming its
    line (a column no object has is ``pair_frame``'s to say). Raises UnicodeDecodeError on bytes that are not
    UTF-8."""
    records, lines = [], []
    with open(file, encoding="utf-8-sig") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"{file}:{number}: not JSON: {err.msg} (character {err.pos + 1})") from None
            if not isinstance(record, dict):
                raise DataError(f"{file}:{number}: a JSON {type(record).__name__}, not an object of columns")
            records.append(record)
            lines.append(number)
    # a missing key is not an empty value (pandas would fill it with NaN, read as ""): the first line without one
    somewhere = [c for c in columns if any(_has_key(record, c) for record in records)]
    for record, line in zip(records, lines, strict=True):
        missing = [c for c in somewhere if not _has_key(record, c)]
        if missing:
            keys = ", ".join(record) or "none"
            raise DataError(f"{file}:{line}: has no key {missing[0]!r} (its keys: {keys})")
    return pd.DataFrame(records, dtype=object), np.array(lines, dtype=np.int64)


def _has_key(record: dict, column: str) -> bool:
    """Whether a JSON object holds ``column``, or its nested form (``translation.de``, as ``_column`` reads it)."""
    outer, _, key = column.partition(".")
    return column in record or bool(key) and isinstance(record.get(outer), dict) and key in record[outer]


def _has_column(frame: pd.DataFrame, column: str) -> bool:
    outer, _, key = column.partition(".")
    return column in frame.columns or bool(key) and outer in frame.columns


def _column(frame: pd.DataFrame, column: str, name: str, where: str) -> pd.Series:
    """A column, or a key inside a column of dicts (``translation.de``, as translation datasets nest pairs)."""
    if column in frame.columns:
        return frame[column]
    outer, _, key = column.partition(".")
    if key and outer in frame.columns:
        return frame[outer].map(lambda d: d.get(key) if isinstance(d, dict) else None)
    shown = ", ".join(map(str, frame.columns))
    raise DataError(f"{where}: no column {column!r} (data.{name}); it has {shown}")


def pair_frame(
    frame: pd.DataFrame,
    source_column: str,
    target_column: str,
    where: str,
    lines: np.ndarray,
    sources_only: bool = False,
) -> pd.DataFrame:
    """``source``, ``target`` strings and the ``line`` (or row) of each; no pairs, empty sides and values that are
    not strings (a number, a list of symbols) stop naming where. ``sources_only``: the sources are checked, the
    targets (None where the column is missing) kept as written."""
    if len(frame) == 0:
        # no column either: nothing but blank lines (trial 33)
        why = (
            "a header only?"
            if any(str(c).strip() for c in frame.columns)
            else "the file holds only blank lines"
        )
        raise DataError(f"{where}: has no {'sources' if sources_only else 'pairs'} ({why})")
    columns = (
        {"source": source_column} if sources_only else {"source": source_column, "target": target_column}
    )
    sides = {side: _column(frame, column, f"{side}_column", where) for side, column in columns.items()}
    for side, values in sides.items():
        typed = values.notna() & ~values.map(lambda v: isinstance(v, str))
        if typed.any():
            k = int(np.argmax(typed.to_numpy()))
            value = values.iloc[k]
            raise DataError(
                f"{where}:{lines[k]}: {columns[side]} holds {value!r:.60} ({type(value).__name__}), not a string"
            )
    pairs = pd.DataFrame({side: values.where(values.notna(), "") for side, values in sides.items()})
    pairs["line"] = lines
    if sources_only:
        given = _has_column(frame, target_column)
        pairs["target"] = _column(frame, target_column, "target_column", where).to_numpy() if given else None
    header = (pairs["source"] == source_column) & (pairs["target"] == target_column)
    named = pairs["source"] == source_column
    if sources_only and pairs["target"].isna().all() and named.any():  # a word list: the word may be real
        rank_zero_warn(f"{where}:{pairs['line'][named].iloc[0]}: the source {source_column!r} is the header's "
                       "name: files joined with their headers? It is predicted as a source", stacklevel=4)  # fmt: skip
    if header.any():  # files joined with their headers (cat a.tsv b.tsv): not a pair
        line = pairs["line"][header].iloc[0]
        raise DataError(f"{where}:{line}: repeats the header ({source_column}, {target_column}): files joined "
                        "with their headers? Remove the line")  # fmt: skip
    for side, column in columns.items():
        empty, broken = pairs[side].str.strip() == "", pairs[side].str.contains("[\r\n]")
        if empty.any():
            row = pairs[empty].iloc[0]
            raise DataError(
                f"{where}:{row.line}: {column} is empty (source {row.source!r}, target {row.target!r})"
            )
        if broken.any():  # in a word, surely a mistake: in a CSV file, a quote left open
            row = pairs[broken].iloc[0]
            csv = where.lower().endswith(".csv")
            quote = ": a quote opened there and closed lines later? Close it on its line" if csv else ""
            raise DataError(f"{where}:{row.line}: {column} holds a line break ({row[side][:60]!r}){quote}")
    return pairs


def read_hub_pairs(
    name: str, config: str | None, source_column: str, target_column: str
) -> dict[str, pd.DataFrame]:
    """The train / validation / test pairs of a ``datasets`` dataset (a Hub name, or a local folder of split
    files); rows are numbered from 1 in errors (``NAME[validation]:12``)."""
    from datamodules.text_sources import load_hub

    data = load_hub(name, config, None)
    out = {}
    for split, names in HUB_SPLITS.items():
        found = next((n for n in names if n in data), None)
        if found is None:
            raise DataError(
                f"data.dataset: {name!r} has no {' / '.join(names)} split (it has {', '.join(data)})"
            )
        frame = data[found].to_pandas()
        rows = np.arange(1, len(frame) + 1)
        out[split] = pair_frame(frame, source_column, target_column, f"{name}[{found}]", rows)
    return out


def _symbols_shown(symbols: list[str]) -> str:
    """Symbols for a message, the first ten; an invisible one (a combining accent, a space, a control character)
    with its code point and name, and decomposed accents named as such (trial 28: ''́'' alone, for a 'café'
    saved as NFD where training had NFC)."""

    def shown(symbol: str) -> str:
        if len(symbol) == 1 and unicodedata.category(symbol)[0] in "MZC":
            return f"{symbol!r} (U+{ord(symbol):04X} {unicodedata.name(symbol, 'unnamed')})"
        return repr(symbol)

    said = ", ".join(map(shown, symbols[:10])) + (", ..." if len(symbols) > 10 else "")
    if any(len(s) == 1 and unicodedata.category(s) == "Mn" for s in symbols):
        said += " (an accent apart from its letter: text in Unicode's decomposed form, NFD; save it as NFC)"
    return said


class SubwordVocabulary:
    """A subword tokenizer (a trained BPE or a Hugging Face one) with its ids after the four specials."""

    def __init__(self, backend):
        self.backend = backend
        backend.no_padding()
        backend.no_truncation()

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True) + len(SPECIALS)

    def tokens(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_text(self, text: str) -> list[int]:
        return [i + len(SPECIALS) for i in self.backend.encode(text, add_special_tokens=False).ids]

    def decode(self, ids) -> list[str]:
        return [self.backend.id_to_token(i - len(SPECIALS)) for i in ids if i >= len(SPECIALS)]

    def decode_text(self, ids) -> str:
        return self.backend.decode([i - len(SPECIALS) for i in ids if i >= len(SPECIALS)])

    def state(self) -> dict:
        return {"tokenizer": self.backend.to_str()}

    @property
    def unknown(self) -> tuple[str, int] | None:
        """The tokenizer's unknown token and its id here (WordPiece's [UNK]); None for one without (byte-level
        BPE reads any text)."""
        saved = json.loads(self.backend.to_str())["model"]  # Unigram's unk_id is in its JSON alone
        token = saved.get("unk_token")
        if token is None and saved.get("unk_id") is not None:
            token = self.backend.id_to_token(saved["unk_id"])
        found = self.backend.token_to_id(token) if token else None
        return (token, found + len(SPECIALS)) if found is not None else None


class Vocabulary:
    """Symbols <-> ids for the ``char`` and ``symbols`` tokenizers: the four specials, then the training split's
    symbols, sorted."""

    def __init__(self, symbols: set[str], kind: str = "symbols"):
        self.symbols = list(SPECIALS) + sorted(symbols - set(SPECIALS))
        self.ids = {s: i for i, s in enumerate(self.symbols)}
        self.kind = kind

    def tokens(self, text: str) -> list[str]:
        return split_symbols(text, self.kind)

    def encode_text(self, text: str) -> list[int]:
        return self.encode(self.tokens(text))

    def decode_text(self, ids) -> str:
        return ("" if self.kind == "char" else " ").join(self.decode(ids))

    def state(self) -> list[str]:
        return self.symbols

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, symbols: list[str]) -> list[int]:
        return [self.ids.get(s, UNK) for s in symbols]

    def decode(self, ids) -> list[str]:
        return [self.symbols[i] for i in ids if i not in (PAD, BOS, EOS)]


def saved_vocabulary(spec: str, option: str) -> Vocabulary | SubwordVocabulary | None:
    """A side's vocabulary as a run saved it (``{"kind": "char", "symbols": [...]}``, or ``{"tokenizer": ...}``
    for a subword one) when ``spec`` names such a ``.json`` file; None for any other spec. Needs no data."""
    saved = saved_json(spec, option, "a saved vocabulary")
    if saved is None:
        return None
    if (
        isinstance(saved, dict)
        and saved.get("kind") in SYMBOL_TOKENIZERS
        and isinstance(saved.get("symbols"), list)
    ):
        return Vocabulary(set(saved["symbols"]), saved["kind"])
    if isinstance(saved, dict) and isinstance(saved.get("tokenizer"), str):
        from tokenizers import Tokenizer

        return SubwordVocabulary(Tokenizer.from_str(saved["tokenizer"]))
    raise DataError(f"{option}: {spec}: not a vocabulary a run saved ({{kind, symbols}} or {{tokenizer}})")


def state_vocabulary(state, kind: str, where: str) -> Vocabulary | SubwordVocabulary:
    """A side's vocabulary from its ``state()`` in a checkpoint: a symbol list (ids in its order) read with
    ``kind`` (char or symbols), or a subword tokenizer."""
    if isinstance(state, dict) and isinstance(state.get("tokenizer"), str):
        from tokenizers import Tokenizer

        return SubwordVocabulary(Tokenizer.from_str(state["tokenizer"]))
    if not isinstance(state, list) or list(state[: len(SPECIALS)]) != list(SPECIALS):
        raise DataError(f"{where}: its vocabulary is neither a symbol list nor a tokenizer")
    vocab = Vocabulary(set(state), kind if kind in SYMBOL_TOKENIZERS else "symbols")
    if vocab.symbols != list(state):  # saved sorted: another order would give other ids
        raise DataError(f"{where}: its vocabulary's symbols are not in the order this version gives them ids")
    return vocab


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


def _warn_seen(
    train: PairSplit, sources: list[list[int]], texts: list[str], lines, where: str, split: str
) -> None:
    """One warning when sources of a held-out split also occur in training (the same word in both, say): its
    scores then count what the model saw. On rank zero only."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    seen = set(map(tuple, train.sources))
    shared = [k for k, s in enumerate(sources) if tuple(s) in seen]
    if shared:
        first = shared[0]
        say_shared(where, len({tuple(sources[k]) for k in shared}), len({tuple(s) for s in sources}),
                   f"distinct {split} sources", split, f"the first: line {lines[first]}, {texts[first]!r}",
                   "Split by source (as `data cmudict` does by word)")  # fmt: skip


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
    SAVED = ("source_symbols", "target_symbols")

    def __init__(
        self,
        train_path: str = "data/cmudict/train.tsv",
        val_path: str | None = "data/cmudict/val.tsv",
        test_path: str | None = "data/cmudict/test.tsv",
        source_column: str = "word",
        target_column: str = "phonemes",
        dataset: str | None = None,
        dataset_config: str | None = None,
        source_tokenizer: str = "char",
        target_tokenizer: str = "symbols",
        bpe_vocab_size: int = 1000,
        lowercase: bool = False,
        max_train_pairs: int | None = None,
        bucket_by_length: bool = True,
        batch_size: int = 64,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        predict_path: str | None = None,
        checkpoint: str | None = None,
    ):
        """
        Args:
            train_path: Pairs to train on: ``.tsv``, ``.csv`` or ``.jsonl`` with a header / keys naming the columns.
            val_path: Validation pairs (same format).
            test_path: Test pairs (same format).
            source_column: The column holding the source sequence (``translation.de``: a key of a column of
                dicts, as translation datasets store pairs).
            target_column: The column holding the target sequence.
            dataset: A ``datasets`` dataset instead of the files: a Hub name (online) or a local folder of split
                files, with train, validation (or valid / dev) and test splits.
            dataset_config: The dataset's configuration (e.g. ``de-en``).
            source_tokenizer: ``char`` (each character a symbol), ``symbols`` (whitespace-separated), ``bpe``
                (byte-level BPE trained on the training sources) or a Hugging Face tokenizer (folder or Hub name).
            target_tokenizer: The same choices for targets (``symbols``: CMUdict's phonemes with their stress
                digits). With a subword tokenizer, ``per`` is the token error rate.
            bpe_vocab_size: Vocabulary of a trained ``bpe`` (each side its own).
            lowercase: Lower-case the sources before tokenizing.
            max_train_pairs: Train on the first this many pairs of a seeded shuffle only (a smaller budget);
                empty: all.
            bucket_by_length: Batch training pairs of similar source length together (less padding).
            batch_size: Pairs per batch and process.
            global_batch_size: Pairs per optimizer step over all processes (instead of ``batch_size``).
            num_workers: DataLoader worker processes.
            predict_path: Sources to write targets for (``predict``): a file of the pair files' formats with the
                source column (a one-column ``.tsv`` with its header names it); a target column there is passed
                through as written. Empty: ``predict`` reads the test pairs.
            checkpoint: A trained model's checkpoint, for ``predict`` with a ``predict_path`` and ``test`` (or
                ``predict``) with a ``test_path`` and no ``predict_path``: the vocabularies come from it, and
                the training and validation files are not read. ``--ckpt_path`` sets it for you.
        """
        super().__init__()
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        for name in ("source_tokenizer", "target_tokenizer"):
            if not getattr(self.hparams, name):
                raise DataError(f"data.{name}: empty (char, symbols, bpe or a Hugging Face tokenizer)")
        if max_train_pairs is not None and max_train_pairs < 1:
            raise DataError(f"data.max_train_pairs: {max_train_pairs} is not a positive number of pairs")
        if "bpe" in (source_tokenizer, target_tokenizer):
            check_bpe_size(bpe_vocab_size, 1, "the side's char or symbols tokenizer", "data.bpe_vocab_size")
        self._state = self._checkpoint_state(checkpoint, predict_path, test_path)
        if dataset is None and self._state is None and (not val_path or not test_path):
            raise DataError("data.val_path and data.test_path: both splits are needed (pair files)")
        self.splits: dict[str, PairSplit] = {}
        self.source_vocab: Vocabulary | SubwordVocabulary | None = None
        self.target_vocab: Vocabulary | SubwordVocabulary | None = None
        self._frames: dict[str, pd.DataFrame] = {}
        # per split, the longest source and target (symbols, without markers) and the file:line of each
        self.longest: dict[str, dict[str, tuple[int, str]]] = {}

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

    def _source_text(self, text: str) -> str:
        return text.lower() if self.hparams.lowercase else text

    def _read(self, split: str) -> pd.DataFrame:
        h = self.hparams
        if split not in self._frames:
            if h.dataset is not None:
                self._frames = read_hub_pairs(h.dataset, h.dataset_config, h.source_column, h.target_column)
            else:
                self._frames[split] = read_pairs(
                    h[f"{split}_path"], h.source_column, h.target_column, f"{split}_path"
                )
        return self._frames[split]

    def _where(self, split: str) -> str:
        h = self.hparams
        return f"{h.dataset}[{split}]" if h.dataset is not None else h[f"{split}_path"]

    def _trained_on(self) -> str:
        """Where the vocabularies come from, for warnings: the training split, or a checkpoint's."""
        if self._state is not None:
            return f"the vocabulary of data.checkpoint {self.hparams.checkpoint}"
        return f"the training split, {self._where('train')}"

    def _vocabulary(self, side: str, texts) -> Vocabulary | SubwordVocabulary:
        """A side's vocabulary from its training texts (``texts()``: read only when needed): symbols, a trained
        BPE, a pretrained tokenizer, or one a run saved (a checkpoint's, which ``align`` gives)."""
        kind = self.hparams[f"{side}_tokenizer"]
        if self._state is not None:  # the checkpoint's (data.checkpoint): no training file read
            where = f"data.checkpoint {self.hparams.checkpoint}"
            saved_kind = self._state.get(f"{side}_kind")  # None: a checkpoint saved before kinds were kept
            if saved_kind in SYMBOL_TOKENIZERS and kind in SYMBOL_TOKENIZERS and saved_kind != kind:
                raise DataError(
                    f"data.{side}_tokenizer: {kind!r}, and the model of {where} read its {side}s as {saved_kind!r} "
                    f"(the same symbols, split otherwise): give --data.{side}_tokenizer {saved_kind}"
                )
            return state_vocabulary(self._state[f"{side}_symbols"], saved_kind or kind, where)
        saved = saved_vocabulary(kind, f"data.{side}_tokenizer")
        if saved is not None:
            return saved
        if kind in SYMBOL_TOKENIZERS:
            symbols: set[str] = set()
            for text in texts():
                symbols.update(split_symbols(text, kind))
            return Vocabulary(symbols, kind)
        from datamodules.lm_tokenize import bpe_tokenizer, pretrained_lm_tokenizer

        if kind == "bpe":
            return SubwordVocabulary(bpe_tokenizer(texts(), self.hparams.bpe_vocab_size).backend)
        try:
            return SubwordVocabulary(pretrained_lm_tokenizer(kind).backend)
        except DataError as err:
            said = str(err).replace("data.tokenizer", f"data.{side}_tokenizer", 1)
            # a bare word: a built-in one misspelt, most likely
            if "/" not in kind and not Path(kind).exists():
                close = difflib.get_close_matches(kind, [*SYMBOL_TOKENIZERS, "bpe"], n=1, cutoff=0.5)
                said = (f"data.{side}_tokenizer: {kind!r} is not char, symbols or bpe"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f", nor a tokenizer folder or hub name that loads: {said.split(': ', 1)[-1]}")  # fmt: skip
            raise DataError(said) from None

    def _build_vocabularies(self) -> None:
        if self.source_vocab is not None:
            return
        self.source_vocab = self._vocabulary(
            "source", lambda: [self._source_text(t) for t in self._read("train")["source"]]
        )
        self.target_vocab = self._vocabulary("target", lambda: list(self._read("train")["target"]))

    def _unseen(self, texts) -> str:
        """The source symbols of ``texts`` that training never had (they read as ``<unk>``), for a warning."""
        vocab = self.source_vocab
        if not isinstance(vocab, Vocabulary):  # a subword tokenizer reads any text
            return ""
        unseen = sorted({s for t in texts for s in vocab.tokens(self._source_text(t))} - vocab.ids.keys())
        return _symbols_shown(unseen)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self._build_vocabularies()
        h = self.hparams
        splits, longest = {}, {}  # kept only once every split is read: a failed setup leaves none
        # from a checkpoint: its vocabularies, and the file to predict (predict_path) or else the test pairs alone
        read = ("train", "val", "test") if self._state is None else () if h.predict_path else ("test",)
        for split in read:
            pairs = self._read(split)
            if split == "train" and h.max_train_pairs is not None and h.max_train_pairs < len(pairs):
                keep = np.sort(np.random.default_rng(0).permutation(len(pairs))[: h.max_train_pairs])
                pairs = pairs.iloc[keep]
            where, lines = self._where(split), pairs["line"].to_numpy()
            self._refuse_reserved(pairs, where)
            self._say_edge_spaces(pairs, where)
            sources = self._encode_sources(pairs, where)
            targets, unseen = [], {}
            for text, line in zip(pairs["target"], lines, strict=True):
                ids = self.target_vocab.encode_text(text)
                if UNK in ids:  # only a symbol vocabulary has no id for a symbol (training has them all)
                    for symbol, i in zip(self.target_vocab.tokens(text), ids, strict=True):
                        if i == UNK:
                            unseen.setdefault(symbol, line)
                if not ids:
                    raise DataError(f"{where}:{line}: target {text!r} has no tokens")
                targets.append(ids)
            self._say_unknown_subwords(pairs["target"], lines, targets, where, h.target_column)
            # kept, not dropped: a held-out split is scored whole, these pairs as the errors they are
            if unseen:
                shown = _symbols_shown(list(unseen))
                rank_zero_warn(
                    f"{where}:{next(iter(unseen.values()))}: target symbols never seen in training "
                    f"({self._trained_on()}): {shown}; they read as <unk>, which the model never writes, so "
                    "their pairs count as errors",
                    stacklevel=4,
                )
            splits[split] = PairSplit(sources, targets, group=split != "train")
            if split != "train" and "train" in splits:
                _warn_seen(splits["train"], sources, pairs["source"].tolist(), lines, where, split)
            longest[split] = {}
            for side, ids in (("source", sources), ("target", targets)):
                k = int(np.argmax([len(i) for i in ids]))
                longest[split][side] = (len(ids[k]), f"{where}:{lines[k]}")
        if h.predict_path:  # the sources to write targets for, one row each, in the file's order
            pairs = read_pairs(
                h.predict_path, h.source_column, h.target_column, "predict_path", sources_only=True
            )
            lines = pairs["line"].to_numpy()
            # its target column is passed through as written, never read as symbols
            self._refuse_reserved(pairs, h.predict_path, sides=("source",))
            sources = self._encode_sources(pairs, h.predict_path)
            splits["predict"] = PairSplit(sources, [[] for _ in sources], group=False)
            k = int(np.argmax([len(s) for s in sources]))
            longest["predict"] = {"source": (len(sources[k]), f"{h.predict_path}:{lines[k]}"),
                                  "target": (0, h.predict_path)}  # fmt: skip
        else:  # predict writes one row per test pair, in the file's order, so that its rows map back to the file's
            splits["predict"] = PairSplit(sources, targets, group=False)
            longest["predict"] = longest["test"]
        # as written; a record without one (NaN in the frame) is an empty field, not "nan"
        given = [None if isinstance(t, float) and np.isnan(t) else t for t in pairs["target"]]
        given = given if pairs["target"].notna().any() else None
        self._predict_keys = [("line", lines)] + ([("target", given)] if given is not None else [])
        self.splits.update(splits)
        self.longest.update(longest)

    def _say_unknown_subwords(self, texts, lines, ids: list[list[int]], where: str, column: str) -> None:
        """Targets a subword tokenizer reads partly as its unknown token (letters or emoji outside a WordPiece
        vocabulary): the model is trained to write that token and scored right for it (trial 28: unsaid)."""
        vocab = self.target_vocab
        unknown = vocab.unknown if isinstance(vocab, SubwordVocabulary) else None
        if unknown is None:
            return
        token, unk = unknown
        hit = [k for k, target in enumerate(ids) if unk in target]
        if hit:
            k = hit[0]
            rank_zero_warn(
                f"{where}:{lines[k]}: {len(hit)} of {len(ids)} {column} texts hold text the target tokenizer reads as "
                f"its unknown token {token!r} (the first: {texts.iloc[k]!r}): the model is trained to write "
                f"{token!r} there and scored right when it does; a tokenizer that reads them (a trained bpe) "
                "scores them honestly",
                stacklevel=4,
            )

    def _sides(self) -> tuple[tuple, tuple]:
        """(side, its column, its vocabulary, its text as the vocabulary reads it) for source and target."""
        h = self.hparams
        return (("source", h.source_column, self.source_vocab, self._source_text),
                ("target", h.target_column, self.target_vocab, lambda t: t))  # fmt: skip

    def _say_edge_spaces(self, pairs: pd.DataFrame, where: str) -> None:
        """Texts read by characters that begin or end with a space (a stray one before a tab): the space is a
        symbol the model must write or read there (trial 28: unsaid). Said, not stripped: the data is the user's."""
        for side, column, vocab, _ in self._sides():
            if not isinstance(vocab, Vocabulary) or vocab.kind != "char":
                continue
            texts = pairs[side]
            edged = texts.map(lambda t: isinstance(t, str) and t != t.strip())
            if edged.any():
                k = int(np.flatnonzero(edged.to_numpy())[0])
                rank_zero_warn(
                    f"{where}:{pairs['line'].iloc[k]}: {int(edged.sum())} {column} text(s) begin or end with "
                    f"whitespace (the first: {texts.iloc[k]!r}): read by characters, each space is a symbol of the text; "
                    "remove them if they are stray",
                    stacklevel=4,
                )

    def _refuse_reserved(self, pairs: pd.DataFrame, where: str, sides=("source", "target")) -> None:
        """A symbol written as one of the specials (``<eos>`` in a phoneme string) would read as that special: an
        end mid-target, a padding the loss skips. Refused at its line (trial 28: trained on silently)."""
        for side, column, vocab, text_of in self._sides():
            # a character is never '<eos>'
            if side not in sides or not isinstance(vocab, Vocabulary) or vocab.kind != "symbols":
                continue
            for text, line in zip(pairs[side], pairs["line"], strict=True):
                if not isinstance(text, str):  # predict_path without targets
                    continue
                reserved = [t for t in vocab.tokens(text_of(text)) if t in SPECIALS]
                if reserved:
                    raise DataError(
                        f"{where}:{line}: {column} holds {reserved[0]!r} ({text!r}), a symbol the model reserves "
                        f"({', '.join(SPECIALS)}): it would read as that special, not as a symbol; rename it"
                    )

    def _encode_sources(self, pairs: pd.DataFrame, where: str) -> list[list[int]]:
        """The sources' ids; symbols training never had read as ``<unk>``, said in one warning at the first line
        that has one."""
        sources = [self.source_vocab.encode_text(self._source_text(s)) for s in pairs["source"]]
        unknown = sum(i == UNK for s in sources for i in s)
        if unknown:
            first = next(line for s, line in zip(sources, pairs["line"], strict=True) if UNK in s)
            rank_zero_warn(f"{where}:{first}: {unknown} source symbols never seen in training read as <unk>: "
                          f"{self._unseen(pairs['source'])}", stacklevel=5)  # fmt: skip
        return sources

    def prediction_keys(self) -> list[tuple[str, list]]:
        """Beside each ``predict`` row: its line in ``predict_path`` and the target column as written there, where
        the file has one; without a ``predict_path`` (a test pair), its line in the test file and its target (the
        reference the prediction is scored against)."""
        self.setup()
        return self._predict_keys

    def _has_predict_split(self) -> bool:
        return True

    def encode_sources(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Sources typed by a user (``align --text``) as a batch: ``x``, ``lengths``, and their symbols."""
        self._build_vocabularies()
        symbols = [self.source_vocab.tokens(self._source_text(t)) for t in texts]
        empty = [t for t, s in zip(texts, symbols, strict=True) if not s]
        if empty:
            raise DataError(f"--text: {empty[0]!r} has no symbols to read")
        for text in texts:
            if unseen := self._unseen([text]):
                rank_zero_warn(f"{text!r}: source symbols never seen in training ({self._trained_on()}) read "
                              f"as <unk>: {unseen}", stacklevel=5)  # fmt: skip
        batch = collate_pairs([(self.source_vocab.encode_text(self._source_text(t)), [[]]) for t in texts])
        return {"x": batch["x"], "lengths": batch["lengths"], "symbols": symbols}

    def state_dict(self) -> dict:
        """The vocabularies and how each side is split (char, symbols or subword), kept in every checkpoint: a
        model is only read with the ids it was trained on."""
        self._build_vocabularies()
        kinds = {f"{side}_kind": vocab.kind if isinstance(vocab, Vocabulary) else "subword"
                 for side, vocab in (("source", self.source_vocab), ("target", self.target_vocab))}  # fmt: skip
        return {
            "source_symbols": self.source_vocab.state(),
            "target_symbols": self.target_vocab.state(),
            **kinds,
        }

    def load_state_dict(self, state: dict) -> None:
        self._build_vocabularies()
        for side in ("source", "target"):
            vocab, saved = getattr(self, f"{side}_vocab"), state[f"{side}_symbols"]
            if saved != vocab.state():
                size = f" ({len(saved)} symbols)" if isinstance(saved, list) else " (a subword tokenizer's)"
                raise DataError(
                    f"{self._where('train')}: the {side} vocabulary built from it ({len(vocab)} ids, data.{side}_tokenizer "
                    f"{self.hparams[f'{side}_tokenizer']!r}) is not the checkpoint's{size}: test and predict build the "
                    "vocabularies from the training file, so give the one the model was trained on, unchanged, and its "
                    "tokenizers"
                )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        self.setup()
        data = self.splits[split]
        return make_loader(data, self.hparams, self.trainer, train, lengths=lambda rows: data.lengths[rows],
                           collate_fn=collate_pairs)  # fmt: skip
