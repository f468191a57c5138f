"""Read labelled DNA files into one byte per base, and write them back.

Formats: the course's plain text (``SEQUENCE<whitespace>LABEL`` a line), CSV/TSV with named columns, and
Parquet. Gzip is detected from the file's first bytes, whatever its name. An encoded folder
(``python -m experiments data encode``: ``codes.npy``, ``offsets.npy``, ``labels.npy``) is memory-mapped
instead of read: data larger than memory trains with memory that does not grow with it.

Every problem with the data is reported as a :class:`DataError` naming the file, the line (or row), the
field and the value; with ``on_bad_line="skip"`` the bad records are dropped and counted instead.
"""

from __future__ import annotations

import gzip
import io
import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from archbench.errors import DataError
from datamodules.files import NpyStream, write_atomic

ALPHABET = "ACGTN"
N_CODE = 4
_INVALID = 255
_LUT = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(ALPHABET):
    _LUT[ord(_base)] = _code
    _LUT[ord(_base.lower())] = _code
# Complement of each code (A<->T, C<->G, N stays N): code 3 - c for ACGT.
COMPLEMENT = np.array([3, 2, 1, 0, N_CODE], dtype=np.uint8)

OnBadLine = Literal["error", "skip"]


@dataclass
class EncodedSequences:
    """Sequences of varying length held as one flat array of base codes (one byte per base). The arrays may be
    memory-mapped files (:func:`open_encoded`): a subset of those is then a view through ``index`` (the bases
    stay on disk and are read per batch), so a process's memory does not grow with the data."""

    codes: np.ndarray  # (total_bases,) uint8; 0..4 for A, C, G, T, N
    offsets: np.ndarray  # (n + 1,) int64; sequence i is codes[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # (n,) float32, or (n,) int64 class ids (of the subset, when there is an index)
    source: str = "<memory>"
    index: np.ndarray | None = None  # rows of codes/offsets in this subset, in order; None: all of them

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.index is None else len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        lengths = np.diff(self.offsets)
        return lengths if self.index is None else lengths[self.index]

    def sequence(self, i: int) -> np.ndarray:
        j = i if self.index is None else self.index[i]
        return np.asarray(self.codes[self.offsets[j] : self.offsets[j + 1]])

    def subset(self, index: np.ndarray) -> EncodedSequences:
        index = np.asarray(index, dtype=np.int64)
        if self.index is not None or isinstance(self.codes, np.memmap):  # a view: the bases stay on disk
            rows = index if self.index is None else self.index[index]
            return EncodedSequences(
                self.codes, self.offsets, np.asarray(self.labels[index]), self.source, rows
            )
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(index):
            starts = self.offsets[index]
            # Gather every base of the chosen sequences in one vectorized step.
            flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
            codes = self.codes[flat]
        else:
            codes = np.zeros(0, dtype=np.uint8)
        return EncodedSequences(codes, offsets, self.labels[index], self.source)

    @classmethod
    def from_strings(cls, sequences: Sequence[str], labels: Sequence[float], source: str = "<memory>"):
        codes, offsets, bad = encode([s.encode("ascii", "replace") for s in sequences])
        if bad:
            i, column, char = bad[0]
            raise DataError(
                f"{source}: sequence {i + 1}: base {column + 1} is {char!r}, expected one of ACGTN"
            )
        return cls(codes, offsets, np.asarray(labels, dtype=np.float32), source)

    def to_strings(self) -> list[str]:
        if self.index is not None:
            table = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
            return [table[self.sequence(i)].tobytes().decode() for i in range(len(self))]
        letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[self.codes].tobytes().decode()
        return [letters[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


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


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip data: {err}") from None
    return data


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    return {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}.get(last, "text")


ENCODED_FILES = ("codes.npy", "offsets.npy", "labels.npy")


def open_encoded(folder: str | Path) -> EncodedSequences:
    """Memory-map an encoded folder: nothing but the array headers is read until batches need their bases."""
    folder = Path(folder)
    missing = [n for n in ENCODED_FILES if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: not an encoded DNA folder (missing {', '.join(missing)})")
    try:
        codes, offsets, labels = (np.load(folder / n, mmap_mode="r") for n in ENCODED_FILES)
    except ValueError as err:
        raise DataError(f"{folder}: damaged encoded DNA folder ({err})") from None
    n = len(offsets) - 1
    problem = None
    if codes.dtype != np.uint8 or codes.ndim != 1:
        problem = f"codes.npy: expected a 1-D uint8 array, found {codes.ndim}-D {codes.dtype}"
    elif offsets.ndim != 1 or n < 0 or offsets[0] != 0 or offsets[-1] != len(codes):
        problem = f"offsets.npy: must start at 0 and end at the {len(codes)} codes"
    elif len(labels) != n:
        problem = f"labels.npy: {len(labels)} labels for {n} sequences"
    if problem:
        raise DataError(f"{folder}: {problem}")
    return EncodedSequences(codes, offsets, labels, source=str(folder))


def encode_file(
    path: str | Path,
    folder: str | Path,
    sequence_column: str = "sequence",
    label_column: str = "label",
    on_bad_line: OnBadLine = "error",
    chunk_records: int = 50_000,
) -> int:
    """Encode a labelled DNA file into an encoded folder chunk by chunk (``chunk_records`` lines or rows at a
    time), so files larger than memory can be converted; errors name the file and line as :func:`read_dna`'s
    do. Nothing is left in ``folder`` when it fails. Returns the number of sequences."""
    path, folder = Path(path), Path(folder)
    if not path.is_file():
        _read_bytes(path)  # the right DataError
    fmt = _format_of(path)
    label_name = label_column if fmt in ("csv", "tsv", "parquet") else "label"
    streams = {
        "codes": NpyStream(folder / "codes.npy", np.uint8),
        "offsets": NpyStream(folder / "offsets.npy", np.int64),
        "labels": NpyStream(folder / "labels.npy", np.float32),
    }
    n = bases = 0
    try:
        streams["offsets"].append(np.zeros(1, dtype=np.int64))
        for records in _record_chunks(path, fmt, sequence_column, label_column, chunk_records):
            part = _encode_records(
                path, *records, on_bad_line=on_bad_line, labels_required=True, label_name=label_name
            )
            streams["codes"].append(part.codes)
            streams["offsets"].append(part.offsets[1:] + bases)
            streams["labels"].append(part.labels)
            n, bases = n + len(part), bases + int(part.offsets[-1])
        if n == 0:
            raise DataError(f"{path}: file is empty (no sequences)")
        for stream in streams.values():
            stream.close()
    except BaseException:
        for stream in streams.values():
            stream.discard()
        for name in ENCODED_FILES:
            (folder / name).unlink(missing_ok=True)
        raise
    return n


def _record_chunks(path: Path, fmt: str, sequence_column: str, label_column: str, chunk: int):
    """The records of a file, ``chunk`` lines (or rows) at a time, with line (row) numbers of the whole file."""
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    if fmt == "text":
        with opener(path, "rb") as f:
            done = 0
            while lines := list(itertools.islice(f, chunk)):
                data = b"".join(lines)
                if data.split():  # a chunk of blank lines holds no records
                    seqs, labels, numbers, unit, problems = _parse_text(data, path, labels_required=True)
                    yield seqs, labels, numbers + done, unit, problems
                done += len(lines)
    elif fmt in ("csv", "tsv"):
        with opener(path, "rb") as f:
            try:
                frames = pd.read_csv(
                    f, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False, chunksize=chunk
                )
                done = 0
                for frame in frames:
                    yield _columns(
                        frame, path, sequence_column, label_column, True, first_line=2 + done, unit="line"
                    )
                    done += len(frame)
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: file is empty") from None
            except pd.errors.ParserError as err:
                raise DataError(f"{path}: cannot parse as {fmt.upper()}: {err}") from None
    else:
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=chunk)
            done = 0
            for batch in batches:
                frame = batch.to_pandas()
                yield _columns(
                    frame, path, sequence_column, label_column, True, first_line=1 + done, unit="row"
                )
                done += len(frame)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read as Parquet: {err}") from None


def read_dna(
    path: str | Path,
    sequence_column: str = "sequence",
    label_column: str = "label",
    on_bad_line: OnBadLine = "error",
    labels_required: bool = True,
) -> EncodedSequences:
    """Read one file of labelled sequences, or memory-map an encoded folder (:func:`encode_file`). See the
    module docstring for the formats."""
    path = Path(path)
    if path.is_dir():
        if not any((path / name).exists() for name in ENCODED_FILES):
            raise DataError(
                f"{path}: is a directory, expected a data file or an encoded DNA folder "
                "(python -m experiments data encode)"
            )
        return open_encoded(path)
    fmt = _format_of(path)
    if fmt == "parquet":
        if not path.is_file():
            _read_bytes(path)  # raises the right DataError
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a damaged file
            raise DataError(f"{path}: cannot read as Parquet: {err}") from None
        records = _columns(
            frame, path, sequence_column, label_column, labels_required, first_line=1, unit="row"
        )
    else:
        data = _read_bytes(path)
        if fmt == "text":
            records = _parse_text(data, path, labels_required)
        else:
            try:
                frame = pd.read_csv(
                    io.BytesIO(data), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False
                )
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: file is empty") from None
            except pd.errors.ParserError as err:
                raise DataError(f"{path}: cannot parse as {fmt.upper()}: {err}") from None
            # Line 1 is the header, so data row i sits on line i + 2.
            records = _columns(
                frame, path, sequence_column, label_column, labels_required, first_line=2, unit="line"
            )
    label_name = label_column if fmt in ("csv", "tsv", "parquet") else "label"
    return _encode_records(
        path, *records, on_bad_line=on_bad_line, labels_required=labels_required, label_name=label_name
    )


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # what bytes.split() splits on


def _parse_text_fast(data: bytes):
    """Well-formed files in one pass: None unless every non-blank line holds exactly 2 fields."""
    tokens = data.split()
    if not tokens or len(tokens) % 2:
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    space = _WHITESPACE[raw]
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    line = np.searchsorted(np.flatnonzero(raw == 10), starts)  # 0-based line of each field
    first, second = line[0::2], line[1::2]
    if len(starts) != len(tokens) or not (np.array_equal(first, second) and np.all(first[1:] > second[:-1])):
        return None
    try:
        labels = np.array(tokens[1::2]).astype(np.float64)
    except ValueError:
        return None
    if not np.isfinite(labels).all():
        return None  # the exact path quotes the label as written
    return tokens[0::2], labels, first + 1, "line", {}


def _parse_text(data: bytes, path: Path, labels_required: bool):
    fast = _parse_text_fast(data) if labels_required else None
    if fast is not None:
        return fast
    # Exact, line by line: names the line of every problem.
    lines = data.splitlines()
    fields = [line.split() for line in lines]
    kept = [(i + 1, f) for i, f in enumerate(fields) if f]  # blank lines are not records
    if not kept:
        raise DataError(f"{path}: file is empty (expected lines of 'SEQUENCE LABEL')")
    line_numbers = np.array([n for n, _ in kept], dtype=np.int64)
    problems: dict[int, str] = {}
    seqs, labels = [], []
    for k, (_, f) in enumerate(kept):
        if len(f) == 2 or (len(f) == 1 and not labels_required):
            seqs.append(f[0])
            labels.append(f[1] if len(f) == 2 else b"")
        else:
            seqs.append(b"")
            labels.append(b"")
            shown = b" ".join(f)[:60].decode("utf-8", "replace")
            problems[k] = f"expected 'SEQUENCE LABEL' (2 fields), found {len(f)}: {shown!r}"
    labels = np.array([s.decode("utf-8", "replace") for s in labels], dtype=object)
    return seqs, labels, line_numbers, "line", problems


def _columns(frame, path, sequence_column, label_column, labels_required, first_line, unit):
    if len(frame) == 0:
        raise DataError(f"{path}: file is empty (no data rows)")
    wanted = [sequence_column] + ([label_column] if labels_required else [])
    for column in wanted:
        if column not in frame.columns:
            raise DataError(
                f"{path}: column {column!r} not found; the file has columns {list(map(str, frame.columns))}"
            )
    raw_seqs = frame[sequence_column]
    problems: dict[int, str] = {}
    seqs = []
    for k, s in enumerate(raw_seqs.tolist()):
        if isinstance(s, bytes):
            seqs.append(s)
        elif isinstance(s, str):
            seqs.append(s.encode("utf-8", "replace"))
        else:
            seqs.append(b"")
            if s is None or (isinstance(s, float) and np.isnan(s)):
                problems[k] = f"field {sequence_column!r} is missing"
            else:
                problems[k] = f"field {sequence_column!r}: {s!r} is not a sequence"
    if label_column in frame.columns:
        labels = frame[label_column].to_numpy(dtype=object)
    else:
        labels = np.full(len(frame), "", dtype=object)
    line_numbers = np.arange(first_line, first_line + len(frame), dtype=np.int64)
    return seqs, labels, line_numbers, unit, problems


def _label_problem(value, label_name: str) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    if not text:
        return f"field {label_name!r} is missing"
    try:
        float(text)
    except ValueError:
        return f"field {label_name!r}: {text[:40]!r} is not a number"
    return f"field {label_name!r}: {text[:40]!r} is not finite"


def _encode_records(
    path, seqs, raw_labels, line_numbers, unit, problems, on_bad_line, labels_required, label_name
):
    codes, offsets, bad = encode(seqs)
    for i, column, char in bad:
        problems.setdefault(
            i, f"sequence base {column + 1} is {char!r}, expected one of A, C, G, T, N (any case)"
        )
    for i in np.flatnonzero(np.diff(offsets) == 0):
        problems.setdefault(int(i), "sequence is empty")

    if raw_labels.dtype == np.float64:  # parsed already
        labels = raw_labels
    else:
        labels = pd.to_numeric(pd.Series(raw_labels), errors="coerce").to_numpy(dtype=np.float64)
    if labels_required:
        for i in np.flatnonzero(~np.isfinite(labels)):
            problems.setdefault(int(i), _label_problem(raw_labels[i], label_name))
    else:
        labels = np.where(np.isfinite(labels), labels, np.nan)

    where = f"{path}"
    if problems:
        order = sorted(problems)
        first = order[0]
        if unit == "line":
            first_msg = f"{where}:{line_numbers[first]}: {problems[first]}"
        else:
            first_msg = f"{where}: row {line_numbers[first]}: {problems[first]}"
        if on_bad_line == "error":
            more = (
                f" (and {len(order) - 1} more bad {unit}s; on_bad_line: skip drops them)"
                if len(order) > 1
                else ""
            )
            raise DataError(first_msg + more)
        keep = np.setdiff1d(np.arange(len(seqs)), np.array(order), assume_unique=True)
        if len(keep) == 0:
            raise DataError(f"{where}: all {len(seqs)} {unit}s are bad; first: {first_msg}")
        warnings.warn(
            f"{where}: skipped {len(order)} of {len(seqs)} {unit}s with bad data (first: {first_msg})",
            stacklevel=2,
        )
        return EncodedSequences(codes, offsets, labels.astype(np.float32), str(path)).subset(keep)
    return EncodedSequences(codes, offsets, labels.astype(np.float32), str(path))


def write_text(path: str | Path, data: EncodedSequences) -> None:
    """Write sequences in the course's format, ``SEQUENCE<TAB>LABEL`` a line (gzip if the name ends .gz).

    The file appears whole or not at all.
    """
    text = "".join(f"{s}\t{y:.6g}\n" for s, y in zip(data.to_strings(), data.labels.tolist(), strict=True))
    write_atomic(path, gzip.compress(text.encode(), mtime=0) if str(path).endswith(".gz") else text)
