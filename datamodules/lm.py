"""Token streams for language models: ``LanguageModelDataModule``.

A corpus (a text file, a folder of them, a CSV/JSON Lines/Parquet file or a Hub dataset with one document per
row) is tokenized once into one memory-mapped token stream per split (``uint16`` when the vocabulary fits),
documents separated by the tokenizer's end-of-text token, under a cache key of the data, the split and the
tokenizer; a second run reads the cache. Nothing holds the corpus in memory: files are read a megabyte at a
time, rows a batch at a time.

Splits are contiguous spans of the corpus in its order: the last documents are the test split, the ones
before them validation (each reaching its fraction of the bytes), so no document straddles two splits. A
corpus of one or two documents (a single text file) is cut at the line boundaries nearest the fractions.

Training reads random context windows (an epoch: as many windows as fit in the split side by side, their
starts drawn without replacement in the run's (seed, epoch) order); evaluation reads the split in consecutive
windows, so every token but the first is predicted exactly once, under DDP too. A batch: ``x`` (B, T) ids,
``y`` (B, T) next tokens (-100 past a short last window), ``lengths`` (B,), ``chars`` (B,) characters of the
targets (for bits per character).
"""

from __future__ import annotations

import codecs
import difflib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.files import (
    NpyStream,
    build_folder_once,
    change_stamp,
    fingerprint,
    not_found,
    not_utf8,
    utf8_problem,
    write_atomic,
)
from datamodules.lm_tokenize import LMTokenizer, resolve_tokenizer, saved_tokenizer
from datamodules.sampling import SplitLoaders, check_loader_options, make_loader
from datamodules.text_sources import FORMATS, load_file, load_hub
from datamodules.text_tokenize import check_bpe_size, digest

SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".txt", ".md", ".text")
# 2: a byte-order mark dropped, CRLF and CR read as LF; 3: a few documents cut at lines, not given whole
CACHE_VERSION = 3
CHUNK = 1 << 20


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARCHBENCH_CACHE", Path.home() / ".cache" / "archbench")) / "lm"


@dataclass
class Part:
    """A stretch of the corpus: bytes ``start..stop`` of a text file (one document, or part of one), or rows
    ``start..stop`` of a table (one document each)."""

    source: str
    start: int
    stop: int
    path: Path | None = None
    table: object = None  # a datasets.Dataset
    column: str = "text"
    said_empty: bool = field(default=False, compare=False)  # its rows without text, said once (read twice)

    def first_line(self) -> int:
        """The 1-based line of a file where the part starts (it may start inside the file: a held-out cut), or
        the 1-based row of a table."""
        if self.table is not None:
            return self.start + 1
        count, left = 1, self.start
        with open(self.path, "rb") as f:
            while left > 0:
                block = f.read(min(CHUNK, left))
                count, left = count + block.count(b"\n"), left - len(block)
        return count

    def say_empty(self, count: int, first_row: int) -> None:
        """One warning for the table's rows without text (no documents: skipped), however often it is read."""
        if not self.said_empty:
            self.said_empty = True
            rank_zero_warn(
                f"{self.source}: {count} row(s) with column {self.column!r} empty or missing (first: row {first_row}) "
                "skipped: no text to learn from"
            )

    def texts(self):
        """The part's text a piece at a time: (text, ends_document)."""
        if self.table is not None:
            # rows without text (a CSV's empty cell is read as missing): no document, said once
            empty, first_empty = 0, None
            for first in range(self.start, self.stop, 1000):
                batch = self.table[first : min(first + 1000, self.stop)][self.column]
                for k, text in enumerate(batch):
                    if text is None or text == "":
                        empty, first_empty = empty + 1, first_empty or first + k + 1
                        continue
                    if not isinstance(text, str):
                        raise DataError(
                            f"{self.source}: row {first + k + 1}: column {self.column!r} is not text ({text!r})"
                        )
                    yield text, True
            if empty:
                self.say_empty(empty, first_empty)
            return
        # As open(encoding="utf-8-sig") reads a file with universal newlines: a byte-order mark at the file's
        # start dropped, CRLF and CR read as LF, so the same text saved on Windows gives the same tokens.
        decoder = codecs.getincrementaldecoder("utf-8-sig" if self.start == 0 else "utf-8")()
        decoder = io.IncrementalNewlineDecoder(decoder, translate=True)
        with open(self.path, "rb") as f:
            f.seek(self.start)
            position = self.start
            while position < self.stop:
                block = f.read(min(CHUNK, self.stop - position))
                if position + len(block) < self.stop:  # end the piece at a line (a character) boundary
                    block += f.readline()[: self.stop - position - len(block)]
                try:
                    text = decoder.decode(block, final=position + len(block) >= self.stop)
                except UnicodeDecodeError:
                    raise DataError(not_utf8(self.path)) from None
                position += len(block)
                yield text, position >= self.stop and self.stop == self.path.stat().st_size


def corpus_files(folder: Path) -> list[Path]:
    """The text files of a corpus folder that are read, in order (a .pdf or .DS_Store beside them is not)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())


def _documents(path: str, option: str, column: str, cache: str) -> list[Part]:
    """Every document of a local source, whole, in order."""
    file = Path(path)
    if file.is_dir():
        files = corpus_files(file)
        if not files:
            raise DataError(f"data.{option}: folder {path!r} has no text files ({', '.join(TEXT_SUFFIXES)})")
        read = set(files)
        others = sorted(p.name for p in file.iterdir() if p not in read and not p.name.startswith("."))
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            rank_zero_warn(
                f"data.{option}: folder {path!r}: {len(others)} of its entries are not read, only text files "
                f"({', '.join(TEXT_SUFFIXES)}) directly in it are: {shown}"
            )
        return [Part(str(p), 0, p.stat().st_size, path=p) for p in files]
    if not file.is_file():
        raise DataError(not_found(f"data.{option}", path))
    if file.suffix.lower() in FORMATS:
        table = load_file(path, option, cache)
        if column not in table.column_names:
            close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.7)
            raise DataError(
                f"{path}: no column {column!r} (data.text_column; columns: {', '.join(table.column_names)})"
                + (f"; did you mean {close[0]!r}?" if close else "")
            )
        return [Part(path, 0, len(table), table=table, column=column)]
    return [Part(path, 0, file.stat().st_size, path=file)]


def _sizes(parts: list[Part]) -> list[tuple[Part, int, int]]:
    """(part, document index within it, bytes) of every document."""
    out = []
    for part in parts:
        if part.table is None:
            out.append((part, 0, part.stop - part.start))
            continue
        import pyarrow.compute as pc

        arrow = part.table.select_columns([part.column]).with_format("arrow")
        row = 0
        for batch in arrow.iter(batch_size=10_000):
            lengths = pc.binary_length(pc.cast(batch.column(part.column), "string")).fill_null(0)
            out += [(part, row + i, int(n)) for i, n in enumerate(lengths.to_numpy(zero_copy_only=False))]
            row += len(lengths)
    return out


def split_corpus(parts: list[Part], fractions: dict[str, float]) -> dict[str, list[Part]]:
    """Train / val / test as contiguous spans: whole documents from the end when there are at least three (empty
    ones not counted), some are left for training and each held-out split gets at most 1.5 times its fraction
    (plus 2% of the corpus), else cuts at the line boundaries nearest the fractions of the bytes (a table's rows
    are never cut: a warning says the shares whole rows give)."""
    sizes = _sizes(parts)
    # a table's rows without text are no documents: said, as when a split is given
    empty: dict[int, list] = {}
    for part, row, n in sizes:
        if n == 0 and part.table is not None:
            empty.setdefault(id(part), [part, 0, row])[1] += 1
    for part, count, first in empty.values():
        part.say_empty(count, first + 1)
    docs = [d for d in sizes if d[2] > 0]
    total = sum(n for _, _, n in docs)
    sources = sorted({p.source for p in parts})
    where = sources[0] if len(sources) == 1 else os.path.commonpath(sources)
    if total == 0:
        raise DataError(f"{where}: the corpus is empty")
    want = {s: fractions[s] * total for s in ("val", "test")}
    if len(docs) >= 3:
        assigned, i = {}, len(docs)
        for split in ("test", "val"):
            taken, first = 0, i
            while first > 0 and (taken < want[split] or first == i) and want[split] > 0:
                first -= 1
                taken += docs[first][2]
            assigned[split], i = docs[first:i], first
        assigned["train"] = docs[:i]
        table = any(p.table is not None for p in parts)
        if assigned["train"]:
            shares = {s: sum(n for *_, n in assigned[s]) / total for s in ("val", "test")}
            close = all(shares[s] <= 1.5 * fractions[s] + 0.02 for s in shares)
            if not close and table:  # a table's rows are its documents: never cut
                rank_zero_warn(
                    f"{where}: whole rows give validation {shares['val']:.1%} and test {shares['test']:.1%} of the "
                    f"corpus (data.val_fraction {fractions['val']:g}, data.test_fraction {fractions['test']:g}); "
                    "give data.val_path and data.test_path for other shares",
                    stacklevel=5,
                )
            if close or table:
                return {s: _merge(d) for s, d in assigned.items()}
        elif table:
            raise DataError(
                f"{where}: the val/test fractions ({fractions['val']:g}, {fractions['test']:g}) take all "
                f"{len(docs)} non-empty documents: give data.val_path and data.test_path, or smaller fractions"
            )
        # a few long files (whole ones would leave training nothing, or take far more than the fractions ask):
        # cut inside them, at line boundaries, as for one file
    elif any(p.table is not None for p in parts):
        raise DataError(
            f"{where}: {len(docs)} non-empty document(s) cannot be split: give data.val_path and data.test_path"
        )
    cuts = [_line_after(parts, total - want["val"] - want["test"]), _line_after(parts, total - want["test"])]
    bounds = {"train": (0, cuts[0]), "val": (cuts[0], cuts[1]), "test": (cuts[1], total)}
    empty = [s for s in ("val", "test") if want[s] > 0 and bounds[s][0] == bounds[s][1]]
    # the cut falls in a document of one line (a file without line breaks): said as such (the split's size alone
    # said nothing of why), unless the file is not text at all, which reading it says
    one_line = [p for p in parts if p.path is not None and _one_line(p)] if empty else []
    if one_line and not any(utf8_problem(p.path) for p in one_line):
        raise DataError(
            f"{one_line[-1].source}: one line of {one_line[-1].stop - one_line[-1].start:,} bytes, with no line "
            f"break to cut the {' and '.join(empty)} split(s) at; give data.val_path and data.test_path, or a "
            "corpus with line breaks"
        )
    return {s: _byte_range(parts, a, b) for s, (a, b) in bounds.items()}


def _merge(docs: list[tuple[Part, int, int]]) -> list[Part]:
    out: list[Part] = []
    for part, row, _ in docs:
        if part.table is None:
            out.append(part)
        elif out and out[-1].table is part.table and out[-1].stop == row:
            out[-1].stop = row + 1
        else:
            out.append(Part(part.source, row, row + 1, table=part.table, column=part.column))
    return out


def _line_after(parts: list[Part], offset: float) -> int:
    """The corpus byte offset just after the first newline at or after ``offset`` (or the document's end)."""
    base = 0
    for part in parts:
        size = part.stop - part.start
        if offset < base + size:
            with open(part.path, "rb") as f:
                f.seek(part.start + int(offset) - base)
                line = f.readline()
            return min(base + size, int(offset) + len(line))
        base += size
    return base


def _one_line(part: Part) -> bool:
    """Whether a document holds no line break before its last byte (read until the first one)."""
    with open(part.path, "rb") as f:
        f.seek(part.start)
        left = part.stop - part.start - 1
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                return True
            if b"\n" in block:
                return False
            left -= len(block)
    return True


def _byte_range(parts: list[Part], a: int, b: int) -> list[Part]:
    out, base = [], 0
    for part in parts:
        size = part.stop - part.start
        lo, hi = max(a, base), min(b, base + size)
        if lo < hi:
            out.append(Part(part.source, part.start + lo - base, part.start + hi - base, path=part.path))
        base += size
    return out


class TokenWindows(Dataset):
    """Windows of ``context + 1`` tokens of a memory-mapped stream: at every start position (training), or the
    consecutive windows ``j * context ..`` (evaluation; the last may be shorter)."""

    def __init__(self, tokens: np.ndarray, context: int, every_start: bool):
        self.tokens, self.context, self.every_start = tokens, context, every_start

    def __len__(self) -> int:
        n = len(self.tokens) - 1  # targets
        return max(0, n - self.context + 1) if self.every_start else -(-n // self.context)

    def __getitem__(self, i: int) -> np.ndarray:
        start = i if self.every_start else i * self.context
        return np.asarray(self.tokens[start : start + self.context + 1], dtype=np.int64)


class WindowCollate:
    """Windows -> ``x``, ``y`` (-100 past a window's end), ``lengths`` and ``chars`` (of the real targets)."""

    def __init__(self, context: int, token_chars: np.ndarray):
        self.context, self.token_chars = context, token_chars

    def __call__(self, windows: list[np.ndarray]) -> dict[str, torch.Tensor]:
        B, T = len(windows), self.context
        x = np.zeros((B, T), dtype=np.int64)
        y = np.full((B, T), -100, dtype=np.int64)
        lengths, chars = np.zeros(B, dtype=np.int64), np.zeros(B, dtype=np.int64)
        for b, w in enumerate(windows):
            n = len(w) - 1
            x[b, :n], y[b, :n], lengths[b] = w[:-1], w[1:], n
            chars[b] = self.token_chars[w[1:]].sum()
        T = int(lengths.max())  # an evaluation batch of short windows only is no wider than they are
        out = {"x": x[:, :T], "y": y[:, :T], "lengths": lengths, "chars": chars}
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


class LanguageModelDataModule(SplitLoaders, L.LightningDataModule):
    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        text_column: str = "text",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        tokenizer: str = "char",
        tokenizer_vocab_size: int = 4096,
        context_length: int = 256,
        windows_per_epoch: int | None = None,
        batch_size: int = 32,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        checkpoint: str | None = None,
    ):
        """
        Args:
            train_path: The corpus: a text file (one document), a folder of ``.txt``/``.md`` files (a document
                each, in name order), or a CSV/TSV/JSON Lines/Parquet file (a document per row, ``text_column``).
                ``python -m experiments data austen`` writes ``data/austen``.
            val_path: Validation text in the same forms. Empty: ``val_fraction`` of the corpus, taken from its end.
            test_path: Test text likewise. Empty: the last ``test_fraction`` of the corpus.
            dataset: A Hugging Face Hub dataset instead of files (online): its train/validation/test splits.
            dataset_config: The Hub dataset's configuration.
            text_column: The column holding the text (tables and Hub datasets).
            val_fraction: Share of the corpus's bytes for validation (whole documents, before the test part).
            test_fraction: Share for test (whole documents at the corpus's end).
            tokenizer: ``char``; ``bpe`` (byte-level BPE trained on the training split); a run's ``tokenizer.json``
                (its run folder's: the same vocabulary on another corpus); a folder with GPT-2's
                ``encoder.json`` and ``vocab.bpe``; or a Hugging Face tokenizer: a folder, a ``.gguf`` file
                (``data/pretrained/smollm2-135m``), or a Hub name (online).
            tokenizer_vocab_size: Vocabulary of a trained ``bpe``.
            context_length: Tokens a window gives the model (it predicts each one's successor).
            windows_per_epoch: Training windows per epoch. Empty: as many as fit side by side in the training
                split (one epoch sees about every token once).
            batch_size: Windows per batch (per device).
            global_batch_size: Windows per optimizer step over all processes and accumulated batches.
            num_workers: DataLoader worker processes.
            cache_dir: Where token streams are cached. Empty: ``$ARCHBENCH_CACHE/lm`` (``~/.cache/archbench/lm``).
            checkpoint: A trained model's checkpoint, for ``test`` with a ``test_path`` of its own (``test
                --ckpt_path`` sets it): its tokenizer is used as trained and only ``test_path`` is read (the
                training files need not exist; a ``bpe`` is not trained again on a training split that the test
                file would change).
        """
        super().__init__()
        self._state = self._checkpoint_state(checkpoint, None, test_path)
        if self._state is None and (dataset is None) == (train_path is None):
            raise DataError(
                f"data: give either train_path (files) or dataset (a Hub name), got train_path={train_path!r}, "
                f"dataset={dataset!r} (e.g. --config experiments/lm/austen.yaml)"
            )
        for name in ("context_length", "tokenizer_vocab_size", "windows_per_epoch"):
            value = locals()[name]
            if value is not None and (not isinstance(value, int) or value < 1):
                raise DataError(f"data.{name}: {value!r} is not a positive integer")
        if tokenizer == "bpe":
            check_bpe_size(tokenizer_vocab_size, 1, "data.tokenizer char")  # and the end-of-text token
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._tokenizer: LMTokenizer | None = None
        self.streams: dict[str, np.ndarray] = {}
        self.token_chars: np.ndarray | None = None

    SAVED = ("tokenizer",)  # with data.checkpoint: the checkpoint's tokenizer, and test_path alone is read

    # Sizes the CLI links into the model.
    in_channels = 0
    task = "language_modeling"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def num_outputs(self) -> int:  # a recurrent net's head predicts the next token
        return self.vocab_size

    @property
    def mask_id(self) -> int | None:  # a masked LM's mask token (MaskedLanguageModelTask)
        return self.tokenizer.mask_id

    @property
    def special_ids(self) -> list[int]:
        return self.tokenizer.special_ids

    @property
    def seq_len(self) -> int:
        return self.hparams.context_length

    # --- corpus -----------------------------------------------------------------------------------------

    def _splits(self) -> dict[str, list[Part]]:
        hp, cache = self.hparams, str(self.cache_dir / "hf")
        if self._state is not None:  # from a checkpoint: its test file alone
            return {
                "train": [],
                "val": [],
                "test": _documents(hp.test_path, "test_path", hp.text_column, cache),
            }
        if hp.dataset is not None:
            loaded = load_hub(hp.dataset, hp.dataset_config, cache)
            named = {"train": "train", "val": "validation", "test": "test"}
            given = {s: [Part(f"{hp.dataset} [{t}]", 0, len(loaded[t]), table=loaded[t], column=hp.text_column)]
                     for s, t in named.items() if t in loaded}  # fmt: skip
        else:
            given = {s: _documents(hp[f"{s}_path"], f"{s}_path", hp.text_column, cache)
                     for s in SPLITS if hp[f"{s}_path"]}  # fmt: skip
        missing = [s for s in ("val", "test") if s not in given]
        if missing:
            fractions = {s: (hp[f"{s}_fraction"] if s in missing else 0.0) for s in ("val", "test")}
            for s in ("val", "test"):
                if s in missing and not 0.0 < fractions[s] < 1.0:
                    raise DataError(
                        f"data.{s}_fraction: {fractions[s]} must be in (0, 1) without data.{s}_path"
                    )
            held = split_corpus(given["train"], fractions)
            given = {"train": held["train"], **{s: given.get(s) or held[s] for s in ("val", "test")}}
        return given

    def _identity(self) -> list:
        hp = self.hparams
        sources = []
        for split in ("test",) if self._state is not None else SPLITS:
            path = hp[f"{split}_path"]
            if path:
                p = Path(path)
                files = corpus_files(p) if p.is_dir() else [p]
                # each file read, by change_stamp: one edited and given its old time back is read again
                sources.append(
                    [split, str(p.resolve()), [[f.name, change_stamp(f)] for f in files if f.is_file()]]
                )
        tokenizer = hp.tokenizer
        if self._state is not None:
            tokenizer = ["checkpoint", digest(self._state["tokenizer"])]
        elif Path(tokenizer).exists():  # a run's tokenizer.json, or a pretrained tokenizer's folder
            stamp = change_stamp if Path(tokenizer).is_file() else fingerprint  # a folder: its files' listing
            tokenizer = [str(Path(tokenizer).resolve()), stamp(Path(tokenizer))]
        fields = [
            "dataset",
            "dataset_config",
            "text_column",
            "val_fraction",
            "test_fraction",
            "tokenizer_vocab_size",
        ]
        return [CACHE_VERSION, sources, tokenizer, {f: hp[f] for f in fields}]

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / "streams" / digest(self._identity())

    def prepare_data(self) -> None:
        """Tokenize the corpus into the cache unless it is there (once per node under DDP)."""
        build_folder_once(self.cache_path, self._tokenize_into)

    def _tokenize_into(self, folder: Path) -> None:
        splits = self._splits()

        def texts(names):
            return (text for s in names for part in splits[s] for text, _ in part.texts())

        tokenizer = (
            self.tokenizer
            if self._state is not None
            else resolve_tokenizer(
                self.hparams.tokenizer,
                lambda: texts(["train"]),
                lambda: texts(SPLITS),
                self.hparams.tokenizer_vocab_size,
            )
        )
        dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
        counts = {}
        for split in SPLITS:
            stream = NpyStream(folder / f"{split}.npy", dtype)
            try:
                for part in splits[split]:
                    lines = 0  # before this piece, in the part: its line in the file only for an error
                    for text, ends_document in part.texts():
                        try:
                            stream.append(tokenizer.encode(text, part.source))
                        except DataError:  # a character outside a saved character vocabulary: its line
                            i = tokenizer.first_unknown(text)
                            if i is None:
                                raise
                            column = i - text.rfind("\n", 0, i)  # on its line (a row's text may hold several)
                            inner = text.count("\n", 0, i)  # line breaks before it in this piece
                            if part.table is not None:
                                where = f"{part.source}: row {part.first_line() + lines}"
                                at = f"on line {inner + 1} of its text, column {column}"
                            else:
                                where, at = (
                                    f"{part.source}:{part.first_line() + lines + inner}",
                                    f"at column {column}",
                                )
                            raise DataError(f"{where}: {tokenizer.unknown_character(text, i, at)}") from None
                        lines += 1 if part.table is not None else text.count("\n")
                        if ends_document and tokenizer.eot_id is not None:
                            stream.append([tokenizer.eot_id])
                stream.close()
            except BaseException:
                stream.discard()
                raise
            counts[split] = stream.count
        np.save(folder / "token_chars.npy", tokenizer.token_chars())
        (folder / "tokenizer.json").write_text(tokenizer.to_json())
        sources = {s: [f"{p.source} [{p.start}:{p.stop}]" for p in parts] for s, parts in splits.items()}
        meta = {"tokens": counts, "sources": sources, "identity": self._identity()}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))

    @property
    def tokenizer(self) -> LMTokenizer:
        if self._tokenizer is None and self._state is not None:
            self._tokenizer = LMTokenizer.from_json(self._state["tokenizer"])
        if self._tokenizer is None:
            self._tokenizer = saved_tokenizer(self.hparams.tokenizer)  # a run's: no corpus needed
        if self._tokenizer is None:
            self.prepare_data()
            self._tokenizer = LMTokenizer.from_json((self.cache_path / "tokenizer.json").read_text())
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        if not self.streams:
            self._load()
        if self.trainer is not None and self.trainer.loggers:  # the run folder's copy, once a trainer runs
            log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank asks
            if self.trainer.is_global_zero and log_dir:
                write_atomic(Path(log_dir) / "tokenizer.json", self.tokenizer.to_json())

    def _load(self) -> None:
        self.prepare_data()
        path, context = self.cache_path, self.hparams.context_length
        streams = {split: np.load(path / f"{split}.npy", mmap_mode="r") for split in SPLITS}
        for split, stream in streams.items():
            if self._state is not None and split != "test":  # from a checkpoint: only the test file is read
                continue
            need = context + 1 if split == "train" else 2
            if len(stream) < need:
                where = self.hparams[f"{split}_path"] or self.hparams.train_path or self.hparams.dataset
                raise DataError(
                    f"{where}: the {split} split has {len(stream)} tokens, fewer than {need} "
                    f"(training needs data.context_length {context} + 1; validation and test 2)"
                )
        self.streams.update(streams)  # only once every split is good: a failed setup leaves none
        self.token_chars = np.load(path / "token_chars.npy")

    def state_dict(self) -> dict:
        """In every checkpoint: ``generate`` reads the tokenizer from it."""
        return {"tokenizer": self.tokenizer.to_json()}

    def load_state_dict(self, state: dict) -> None:
        if "tokenizer" in state and state["tokenizer"] != self.tokenizer.to_json():
            # a BPE is trained on the training split, which a test_path of its own changes
            trained = self.hparams.tokenizer == "bpe"
            raise DataError(
                f"the checkpoint's tokenizer differs from this data's (data.tokenizer {self.hparams.tokenizer!r}): "
                + ("a BPE trains again on this data's training split, which other files (a test_path of its own, "
                   "another train_path) change: give the run's own, --data.tokenizer RUN/tokenizer.json (beside its "
                   "config.yaml)" if trained else "use the data config the checkpoint was trained with")
            )  # fmt: skip

    # --- loaders ----------------------------------------------------------------------------------------

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        self.setup()
        context = self.hparams.context_length
        windows = TokenWindows(self.streams[split], context, every_start=train)
        per_epoch = None
        if train:
            per_epoch = self.hparams.windows_per_epoch or max(1, (len(self.streams[split]) - 1) // context)
        collate = WindowCollate(context, self.token_chars)
        return make_loader(windows, self.hparams, self.trainer, train, collate_fn=collate, samples=per_epoch)
