"""The DNA file formats, one parser each, read a chunk of records at a time: the course's plain text
(``SEQUENCE<whitespace>LABEL`` a line), CSV/TSV with named columns, and Parquet. Gzip is detected from the
file's first bytes, whatever its name.

A chunk of records is ``(sequences, raw labels, line or row numbers, "line"|"row", problems)``: the raw
fields, with the problems found while splitting them (a wrong field count, a missing field) keyed by record;
``dna_io`` encodes them and checks bases and labels.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from archbench.errors import DataError
from datamodules.files import not_utf8, open_quote_line

Records = tuple[list[bytes], np.ndarray, np.ndarray, str, dict[int, str]]
ALPHABET = "ACGTN"


def is_number(text) -> bool:
    """Whether a field reads as a number (nan and inf too), as ``float`` reads it."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def is_bases(text, least: int = 1) -> bool:
    """Whether a field is bases alone (A, C, G, T, N, any case), at least ``least`` of them."""
    return isinstance(text, str) and len(text) >= least and not set(text.upper()) - set(ALPHABET)


def format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    return {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}.get(last, "text")


def check_readable(path: Path) -> None:
    """A DataError naming the path when it is not a readable file."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None


def record_chunks(
    path: Path, sequence_column: str, label_column: str, labels_required: bool, chunk: int = 50_000
) -> Iterator[Records]:
    """The records of a file, ``chunk`` lines (or rows) at a time, numbered as lines (rows) of the whole file."""
    check_readable(path)
    fmt = format_of(path)
    try:
        if fmt == "text":
            yield from _text_chunks(path, labels_required, chunk)
        elif fmt in ("csv", "tsv"):
            yield from _table_chunks(path, fmt, sequence_column, label_column, labels_required, chunk)
        else:
            yield from _parquet_chunks(path, sequence_column, label_column, labels_required, chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: corrupt gzip data: {err}") from None


def open_data(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 (closed by the caller's with)


def _text_chunks(path: Path, labels_required: bool, chunk: int) -> Iterator[Records]:
    with open_data(path) as f:
        first = f.readline()
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # one bad line per line otherwise
            raise DataError(not_utf8(path, open_data))
        start = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0  # as pandas drops a CSV's
        first = first[start:]
        _refuse_fasta_and_fastq(path, first, f)
        f.seek(start)
        done = 0
        while lines := list(itertools.islice(f, chunk)):
            data = b"".join(lines)
            if data.split():  # a chunk of blank lines holds no records
                seqs, labels, numbers, unit, problems = parse_text(data, labels_required)
                yield seqs, labels, numbers + done, unit, problems
            done += len(lines)


_INSTEAD = (
    "write one sequence and its label per line (ACGT... 0.5), or a CSV/TSV with sequence and label columns"
)


def _refuse_fasta_and_fastq(path: Path, first: bytes, f) -> None:
    """Not one base's error per line: what the file is (``first`` is line 1, ``f`` is just past it)."""
    shown = first[:40].decode(errors="replace").strip()
    if first.startswith(b">"):
        raise DataError(f"{path}:1: a FASTA header ({shown!r}): FASTA is not read; {_INSTEAD}")
    if first.startswith(b"@"):  # FASTQ: @name, its bases, +, their qualities
        f.readline()
        if f.readline().startswith(b"+"):
            raise DataError(
                f"{path}:1: a FASTQ record ({shown!r}, then its sequence and a '+' line): FASTQ is not read (it has "
                f"no labels); {_INSTEAD}"
            )


def _table_chunks(path, fmt, sequence_column, label_column, labels_required, chunk) -> Iterator[Records]:
    with open_data(path) as f:
        try:
            frames = read_table_chunks(f, fmt, chunk)
            for frame in frames:  # line 1 is the header; the index counts every line after it
                if len(frame):
                    yield columns(frame, path, sequence_column, label_column, labels_required, 2, "line")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: file is empty") from None
        except pd.errors.ParserError as err:
            # pandas' "Expected 3 fields in line 12, saw 4" said as the other readers say it (trial 30)
            fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
            if fields:
                expected, line, saw = fields.groups()
                raise DataError(f"{path}:{line}: {saw} fields, the header has {expected} (a separator inside a "
                                "value? Quote it)") from None  # fmt: skip
            if "EOF inside string" in str(err):  # pandas' row, not the line (trial 31)
                line = open_quote_line(path, "," if fmt == "csv" else "\t", open_data)
                raise DataError(f"{path}:{line}: a quote opened on this line is never closed (the file ends inside "
                                "it)") from None  # fmt: skip
            raise DataError(f"{path}: cannot parse as {fmt.upper()}: {err}") from None
        except UnicodeDecodeError:
            raise DataError(not_utf8(path, open_data)) from None


def read_table_chunks(f, fmt: str, chunk: int) -> Iterator[pd.DataFrame]:
    """A CSV/TSV's rows as strings, ``chunk`` lines at a time, blank lines left out but counted: row ``i`` of
    the index sits on line ``i + 2`` (pandas alone skips blank lines and loses the count)."""
    leading = 0  # blank lines before the header: pandas would take the first for it
    while (line := f.readline()) and not line.strip():
        leading += 1
    sep = "," if fmt == "csv" else "\t"
    # a column named twice: pandas reads the first as named and renames the other ('y.1'), unsaid (trial 30)
    text = line.decode("utf-8-sig") if isinstance(line, bytes) else line
    names = [name.strip() for name in next(csv.reader([text], delimiter=sep), [])]
    twice = [name for name, count in Counter(names).items() if name and count > 1]
    if twice:
        raise pd.errors.ParserError(
            f"line {leading + 1}: the header names column {twice[0]!r} twice (the second would be read as "
            f"'{twice[0]}.1', unsaid); rename one"
        )
    f.seek(0)
    frames = pd.read_csv(f, sep=sep, dtype=str, keep_default_na=False,
                         skip_blank_lines=False, skiprows=leading, chunksize=chunk)  # fmt: skip
    start = 0
    for frame in frames:
        if not isinstance(frame.index, pd.RangeIndex):  # every row a field longer than the header
            frame = _without_trailing_field(frame, start, leading)
        start += len(frame)
        frame.index += leading
        first, *rest = (frame[c].to_numpy() for c in frame.columns)
        blank = np.logical_and.reduce([r == "" for r in rest]) if rest else np.ones(len(frame), dtype=bool)
        candidates = np.flatnonzero(blank)  # a blank or all-space line: the first field alone, of spaces
        blank[candidates] = [not v.strip() for v in first[candidates]]
        yield frame[~blank] if len(candidates) else frame


def _without_trailing_field(frame: pd.DataFrame, start: int, leading: int) -> pd.DataFrame:
    """Rows of one field more than the header, which pandas reads as an index and every column shifted one to
    the right: where that last field is empty on every line (a delimiter at each line's end, as spreadsheets
    export), the rows as the header names them; otherwise a ParserError naming the first value past the header
    (a file separated by another character, decimal commas)."""
    fields = [frame.index.to_numpy(dtype=object), *(frame[c].to_numpy() for c in frame.columns)]
    extra = fields[-1]
    filled = np.flatnonzero(extra != "")
    if len(filled):
        header = list(frame.columns)
        joined = next((s for s in (";", "\t", "|") if len(header) == 1 and s in header[0]), None)
        hint = (
            f": the header is one field holding {joined!r}, a file separated by {joined!r}? Save it comma-separated"
            if joined
            else ""
        )
        raise pd.errors.ParserError(
            f"line {leading + start + filled[0] + 2} has {len(fields)} fields where the header has {len(header)} "
            f"({', '.join(header)}): {extra[filled[0]]!r} is past its last column{hint}"
        )
    return pd.DataFrame(
        dict(zip(frame.columns, fields[:-1], strict=True)), index=pd.RangeIndex(start, start + len(frame))
    )


def _parquet_chunks(path, sequence_column, label_column, labels_required, chunk) -> Iterator[Records]:
    import pyarrow.parquet as pq

    try:
        # Parquet compresses itself; a gzipped copy (.parquet.gz) is read in memory
        with open_data(path) as f:
            source = io.BytesIO(f.read()) if isinstance(f, gzip.GzipFile) else path
        batches = pq.ParquetFile(source).iter_batches(batch_size=chunk)
        done = 0
        for batch in batches:
            frame = batch.to_pandas()
            frame.index += done  # rows of the whole file
            yield columns(frame, path, sequence_column, label_column, labels_required, 1, "row")
            done += len(frame)
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot read as Parquet: {err}") from None


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # what bytes.split() splits on


def _parse_text_fast(data: bytes) -> Records | None:
    """Well-formed text in one pass: None unless every non-blank line holds exactly 2 fields."""
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


def parse_text(data: bytes, labels_required: bool) -> Records:
    """Records of plain text (1-based line numbers within ``data``); blank lines are not records."""
    fast = _parse_text_fast(data) if labels_required else None
    if fast is not None:
        return fast
    kept = [(i + 1, f) for i, f in enumerate(line.split() for line in data.splitlines()) if f]
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
    for k, label in enumerate(labels):
        if (problem := utf8_field_problem("label", label)) is not None:
            problems.setdefault(k, problem)
    labels = np.array([s.decode("utf-8", "replace") for s in labels], dtype=object)
    return seqs, labels, line_numbers, "line", problems


def utf8_field_problem(field: str, data: bytes) -> str | None:
    """What is wrong when a field's bytes are not UTF-8 text (a file saved as Latin-1, say); None when they are."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            f"not UTF-8 text: {field} byte {err.start + 1} is 0x{data[err.start]:02x}; save the file as UTF-8"
        )
    return None


def _no_header(names: list[str], wanted: list[str], unit: str) -> str:
    """`` (no header line? ...)`` where the columns a CSV/TSV file names are data (bases, numbers): its first
    line is a record (trial 30); else ``""``. Parquet files always name their columns (``unit`` row)."""

    if unit != "line" or not any(is_number(name) or is_bases(name, least=4) for name in names):
        return ""
    return f" (no header line? A CSV or TSV file's first line names its columns: add one that names {' and '.join(map(repr, wanted))})"


def columns(frame, path, sequence_column, label_column, labels_required, first_line, unit) -> Records:
    """Records of a table's named columns; row ``i`` of the frame's index is line (or row) ``first_line + i``."""
    wanted = [sequence_column] + ([label_column] if labels_required else [])
    for column in wanted:
        if column not in frame.columns:
            names = list(map(str, frame.columns))
            raise DataError(f"{path}: column {column!r} not found; the file has columns {names}"
                            + _no_header(names, wanted, unit))  # fmt: skip
    problems: dict[int, str] = {}
    seqs = []
    for k, s in enumerate(frame[sequence_column].tolist()):
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
    line_numbers = first_line + frame.index.to_numpy(dtype=np.int64)
    return seqs, labels, line_numbers, unit, problems
