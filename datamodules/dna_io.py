"""Labelled DNA files as one byte per base in a :class:`~datamodules.storage.RaggedStore`, and back.

``read_dna`` reads a file (see ``dna_formats`` for the formats) into memory, or memory-maps an encoded folder;
``encode_file`` writes a file of any size into an encoded folder (``codes.npy``, ``offsets.npy``,
``labels.npy``) chunk by chunk. Both go through the same parser and the same checks, so a problem is reported
the same way: a :class:`DataError` naming the file, the line (or row), the field and the value; with
``on_bad_line="skip"`` the bad records are dropped and counted instead.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from lightning.pytorch.utilities import rank_zero_warn

from archbench.errors import DataError
from datamodules.dna_formats import (
    ALPHABET,
    check_readable,
    format_of,
    is_bases,
    is_number,
    record_chunks,
    utf8_field_problem,
)
from datamodules.files import write_atomic
from datamodules.storage import RaggedStore, StoreWriter, open_store

N_CODE = 4
_INVALID = 255
_LUT = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(ALPHABET):
    _LUT[ord(_base)] = _code
    _LUT[ord(_base.lower())] = _code
# Complement of each code (A<->T, C<->G, N stays N): code 3 - c for ACGT.
COMPLEMENT = np.array([3, 2, 1, 0, N_CODE], dtype=np.uint8)
ENCODED_FILES = ("codes.npy", "offsets.npy", "labels.npy")

OnBadLine = Literal["error", "skip"]


def encode(sequences: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, str]]]:
    """Encode sequences to codes in one vectorized pass.

    Returns ``(codes, offsets, bad)`` where ``bad`` lists ``(sequence index, column, character)`` for the
    first invalid character of each sequence that has one.
    """
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    raw = np.frombuffer(b"".join(sequences), dtype=np.uint8)
    codes = _LUT[raw]
    bad: list[tuple[int, int, str]] = []
    invalid = np.flatnonzero(codes == _INVALID)
    if len(invalid):
        seq_of = np.searchsorted(offsets, invalid, side="right") - 1
        first = np.unique(seq_of, return_index=True)[1]
        for pos, i in zip(invalid[first], seq_of[first], strict=True):
            bad.append((int(i), int(pos - offsets[i]), chr(raw[pos])))
    return codes, offsets, bad


def from_strings(sequences: Sequence[str], labels: Sequence[float], source: str = "<memory>") -> RaggedStore:
    encoded = [s.encode("utf-8", "surrogatepass") for s in sequences]
    codes, offsets, bad = encode(encoded)
    if bad:
        i, column, _ = bad[0]
        raise DataError(f"{source}: sequence {i + 1}: {_base_problem(encoded[i], column)}")
    return RaggedStore(codes, offsets, np.asarray(labels, dtype=np.float32), source)


def to_strings(data: RaggedStore) -> list[str]:
    table = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    return [table[data.item(i)[0]].tobytes().decode() for i in range(len(data))]


def _label_problem(value, label_name: str) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    if not text:
        return f"field {label_name!r} is missing"
    if not is_number(text):
        return (
            f"field {label_name!r}: {text[:40]!r} is not a number (DNA labels are numbers: a value to regress, or "
            "a class id 0, 1, ...)"
        )
    return f"field {label_name!r}: {text[:40]!r} is not finite"


NOT_A_CLASS_ID = (
    "is not a class id (task classification takes integer ids 0..K-1; task regression reads numbers)"
)


def not_class_ids(labels: np.ndarray) -> np.ndarray:
    """Positions of the finite labels that are not integers 0, 1, ...: float64 (N,) -> int64 (n_bad,)."""
    return np.flatnonzero(np.isfinite(labels) & ((labels != np.round(labels)) | (labels < 0)))


def _base_problem(sequence: bytes, column: int) -> str:
    """What is wrong with the byte at ``column`` of a sequence: a character other than a base (counted in
    characters, as the user sees the line), or bytes that are not UTF-8 text."""
    if (problem := utf8_field_problem("sequence", sequence)) is not None:
        return problem
    position = len(sequence[:column].decode("utf-8")) + 1
    char = sequence[column:].decode("utf-8")[0]
    return f"sequence base {position} is {char!r}, expected one of A, C, G, T, N (any case)"


class _Encoded:
    """One chunk of records encoded and checked: the good ones as a store, the problems by record."""

    def __init__(self, path, seqs, raw_labels, line_numbers, unit, problems, labels_required, label_name,
                 class_ids=False):  # fmt: skip
        codes, offsets, bad = encode(seqs)
        for i, column, _ in bad:
            problems.setdefault(i, _base_problem(seqs[i], column))
        for i in np.flatnonzero(np.diff(offsets) == 0):
            problems.setdefault(int(i), "sequence is empty")
        if raw_labels.dtype == np.float64:  # parsed already
            labels = raw_labels
        else:
            labels = pd.to_numeric(pd.Series(raw_labels), errors="coerce").to_numpy(dtype=np.float64)
        # every label a word ('pos', 'neg'): class names, where numbers are read (trial 32: the hint was to skip
        # the bad lines, which were all of them)
        self.names = None
        # no label read as a number (checked on the parsed array: the set of words is made only then)
        if labels_required and len(labels) and not problems and np.isnan(labels).all():
            words = {str(v).strip() for v in raw_labels}
            if all(w and not is_number(w) for w in words):  # not 'nan' or 'inf' either, nor empty
                self.names = sorted(words)
        if labels_required:
            for i in np.flatnonzero(~np.isfinite(labels)):
                problems.setdefault(int(i), _label_problem(raw_labels[i], label_name))
        else:
            labels = np.where(np.isfinite(labels), labels, np.nan)
        if labels_required and class_ids:  # here, where the line is known; a held-out split no longer has it
            field = "label" if format_of(Path(path)) == "text" else f"field {label_name!r}:"
            for i in not_class_ids(labels):
                shown = (
                    f"{labels[i]:.10g}" if raw_labels.dtype == np.float64 else str(raw_labels[i]).strip()[:40]
                )
                problems.setdefault(int(i), f"{field} {shown} {NOT_A_CLASS_ID}")
        self.total, self.unit = len(seqs), unit
        self.bad = sorted(problems)
        self.first = None
        if self.bad:
            k = self.bad[0]
            where = f"{path}:{line_numbers[k]}" if unit == "line" else f"{path}: row {line_numbers[k]}"
            self.first = f"{where}: {problems[k]}"
            text = format_of(Path(path)) == "text"
            header = line_numbers[k] == 1 and text and k in {i for i, _, _ in bad}
            if (
                text and is_number(seqs[k]) and is_bases(raw_labels[k])
            ):  # 'LABEL SEQUENCE', swapped  # "1 ACGT": trial 30 was asked "a header line?"
                self.first += " (the two fields swapped? Plain-text lines are 'SEQUENCE LABEL')"
            elif header:  # "sequence label" on line 1 of a plain-text file
                self.first += (
                    " (a header line? Plain-text files have none: name the file .csv or .tsv for columns)"
                )
        store = RaggedStore(codes, offsets, labels.astype(np.float32), str(path))
        keep = np.setdiff1d(np.arange(len(seqs)), np.array(self.bad, dtype=np.int64), assume_unique=True)
        self.store = store.take(keep) if self.bad else store
        self.lines = np.asarray(line_numbers, dtype=np.int64)[keep]  # of the records kept, in the file


def _encoded_chunks(
    path: Path,
    sequence_column: str,
    label_column: str,
    on_bad_line: OnBadLine,
    labels_required: bool,
    chunk: int,
    lines: list | None = None,
    class_ids: bool = False,
) -> Iterator[RaggedStore]:
    """The file's good records as stores, a chunk at a time; a bad record stops with its line
    (``on_bad_line="error"``) or is dropped, and one warning at the end says how many (``"skip"``). ``lines``,
    when given, receives each chunk's array of the kept records' line (text, CSV/TSV) or row (Parquet)
    numbers. ``class_ids``: a label that is not an integer 0, 1, ... is a bad record (task classification)."""
    if on_bad_line not in ("error", "skip"):
        raise DataError(f"on_bad_line: {on_bad_line!r} is not one of 'error', 'skip'")
    label_name = label_column if format_of(path) in ("csv", "tsv", "parquet") else "label"
    total = skipped = 0
    first, unit = None, "line"
    for records in record_chunks(path, sequence_column, label_column, labels_required, chunk):
        part = _Encoded(path, *records, labels_required, label_name, class_ids)
        unit = part.unit
        if part.names and not total:  # the file's first records
            shown = ", ".join(map(repr, part.names[:5])) + (", ..." if len(part.names) > 5 else "")
            ids = ", ".join(f"{name} {i}" for i, name in enumerate(part.names[:3]))
            raise DataError(
                f"{path}: field {label_name!r} holds words ({shown}) on every line, not numbers: DNA labels are "
                f"numbers (a value to regress, or class ids 0..K-1); write each class as its id (e.g. {ids})"
            )
        if part.bad and on_bad_line == "error":
            more = len(part.bad) - 1
            more = f" (and {more} more bad {unit}s; on_bad_line: skip drops them)" if more else ""
            raise DataError(part.first + more)
        total, skipped, first = total + part.total, skipped + len(part.bad), first or part.first
        if lines is not None:
            lines.append(part.lines)
        if len(part.store):
            yield part.store
    if total == 0:
        expected = "expected lines of 'SEQUENCE LABEL'" if format_of(path) == "text" else "no data rows"
        raise DataError(f"{path}: file is empty ({expected})")
    if skipped == total:
        raise DataError(f"{path}: all {total} {unit}s are bad; first: {first}")
    if skipped:
        rank_zero_warn(
            f"{path}: skipped {skipped} of {total} {unit}s with bad data (first: {first})", stacklevel=6
        )


def read_dna(
    path: str | Path,
    sequence_column: str = "sequence",
    label_column: str = "label",
    on_bad_line: OnBadLine = "error",
    labels_required: bool = True,
    lines: list | None = None,
    class_ids: bool = False,
) -> RaggedStore:
    """One file of labelled sequences read into memory, or an encoded folder (:func:`encode_file`)
    memory-mapped. ``lines``, when given (a file, not a folder), receives the arrays of the records' line or
    row numbers in the file (records ``on_bad_line="skip"`` dropped are not there). ``class_ids``: labels must
    be integers 0, 1, ... (task classification), checked as read so that an error names the line; an encoded
    folder, which keeps no lines, is not checked here."""
    path = Path(path)
    if path.is_dir():
        if not any((path / name).exists() for name in ENCODED_FILES):
            raise DataError(
                f"{path}: is a directory, expected a data file or an encoded DNA folder "
                "(python -m experiments data encode)"
            )
        return open_store(path, ENCODED_FILES, "DNA")
    parts = list(
        _encoded_chunks(
            path, sequence_column, label_column, on_bad_line, labels_required, 1_000_000, lines, class_ids
        )
    )
    if len(parts) == 1:
        return parts[0]
    sizes = [int(p.offsets[-1]) for p in parts]
    shifts = np.cumsum([0, *sizes[:-1]])
    offsets = np.concatenate([[0], *(p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True))])
    return RaggedStore(
        np.concatenate([p.values for p in parts]),
        offsets,
        np.concatenate([p.labels for p in parts]),
        str(path),
    )


def encode_file(
    path: str | Path,
    folder: str | Path,
    sequence_column: str = "sequence",
    label_column: str = "label",
    on_bad_line: OnBadLine = "error",
    chunk_records: int = 50_000,
) -> int:
    """Encode a labelled DNA file into a new encoded folder chunk by chunk (``chunk_records`` lines or rows at
    a time), so files larger than memory can be converted; errors name the file and line as :func:`read_dna`'s
    do. The folder is built beside its place and renamed into it, so it appears whole or not at all; a folder
    that holds files already is refused (a second encoding over a first would mix or lose them). Returns the
    number of sequences."""
    given = folder  # as the user wrote it, for the messages
    path, folder = Path(path), Path(os.path.abspath(folder))  # "." and "x/.." by name, as the user meant them
    check_readable(path)
    if folder.is_symlink():
        folder = folder.resolve()  # a link to a folder: the folder is made there
    if folder == Path.cwd().resolve() or folder in Path.cwd().resolve().parents:
        raise DataError(
            f"{given}: is the current folder (or holds it); encode into a new folder, e.g. ./encoded"
        )
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{given}: is a file, not a folder to encode into")
    if folder.is_dir() and (held := sorted(p.name for p in folder.iterdir())):
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise DataError(
            f"{given}: the folder holds files already ({shown}); encode into a new folder, or delete this one first"
        )
    for stale in folder.parent.glob(f".{folder.name}.partial-*"):  # left by a killed encoding
        if not _running(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    scratch = folder.parent / f".{folder.name}.partial-{os.getpid()}"  # made with the user's umask
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        writer = StoreWriter(scratch, np.uint8, np.float32, ENCODED_FILES)
        try:
            for part in _encoded_chunks(
                path, sequence_column, label_column, on_bad_line, True, chunk_records
            ):
                writer.append(part.values, np.diff(part.offsets), part.labels)
            writer.close()
        except BaseException:
            writer.discard()
            raise
        scratch.replace(folder)  # over an empty folder, or none
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return writer.rows


def _running(pid: str) -> bool:
    """Whether the process ``pid`` (a scratch folder's suffix) still runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: str | Path, data: RaggedStore) -> None:
    """Write sequences in the course's format, ``SEQUENCE<TAB>LABEL`` a line (gzip if the name ends .gz).

    The file appears whole or not at all.
    """
    text = to_text(data)
    write_atomic(path, gzip.compress(text.encode(), mtime=0) if str(path).endswith(".gz") else text)


def to_text(data: RaggedStore) -> str:
    """Sequences in the course's format, ``SEQUENCE<TAB>LABEL`` a line."""
    labels = [float(data.item(i)[1]) for i in range(len(data))]
    return "".join(f"{s}\t{y:.6g}\n" for s, y in zip(to_strings(data), labels, strict=True))
