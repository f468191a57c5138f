"""Where texts come from and what is checked about them before any is tokenized.

Local CSV/TSV/JSON/JSON Lines/Parquet files are read with ``datasets.load_dataset`` (memory-mapped Arrow);
when it fails, the file is read again to say why in one line (``datasets`` says only "An error occurred while
generating the dataset"): the byte that is not UTF-8, the line with more fields than the header, the line that
is not JSON. Hub datasets load by name (online). The checks read a batch at a time, never a whole column, and
name a problem by the row of its source file (``Split.rows`` maps a subset's rows back to the file's).
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from lightning.pytorch.utilities import rank_zero_warn

from archbench.errors import DataError, first_line
from datamodules.files import change_stamp, not_found, open_quote_line, utf8_problem
from datamodules.splits import held_out_sizes, hold_out, seeded_subset

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class Split:
    """A split's rows (``datasets.Dataset``), where they came from, and their rows in that source."""

    data: datasets.Dataset
    source: str  # the file (or "file [test part]", or "hub name [split]")
    rows: np.ndarray | None = None  # row of the source file of each row of data; None: the same

    def select(self, positions: np.ndarray, source: str | None = None) -> Split:
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        return Split(self.data.select(positions), source or self.source, rows)

    def source_row(self, i: int) -> int:
        return int(i if self.rows is None else self.rows[i])


@contextlib.contextmanager
def quiet():
    """No ``datasets`` progress bars or log lines for the small steps (reading, saving); restored afterwards."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.utils.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read file" lines: we say why
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not was_disabled:
            datasets.utils.enable_progress_bars()


def load_file(path: str, option: str, cache: str) -> datasets.Dataset:
    """A local file as a ``datasets.Dataset``, or a DataError naming the option, the file and the reason."""
    file = Path(path)
    if file.is_dir():
        raise DataError(f"data.{option}: {path!r} is a directory, expected a data file")
    if not file.is_file():
        raise DataError(not_found(f"data.{option}", path))
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise DataError(
            f"data.{option}: {path!r}: unknown format {file.suffix!r}; expected one of {sorted(FORMATS)}"
        )
    kwargs = {"delimiter": "\t"} if file.suffix.lower() == ".tsv" else {}
    if fmt == "json" and (reason := utf8_problem(file)):  # pyarrow's JSON reader keeps such bytes in strings
        raise DataError(f"{file}: {reason}")
    # datasets keys its own cache of a local file on the path and modification time: a file edited and given its
    # old time back was read from the old copy; its cache goes in a folder of the file's change_stamp
    cache = str(Path(cache) / hashlib.sha256(change_stamp(file).encode()).hexdigest()[:16])
    try:
        with quiet():
            data = datasets.load_dataset(fmt, data_files=str(file), split="train", cache_dir=cache, **kwargs)
    except Exception as err:  # pyarrow/pandas/json errors wrapped by datasets: say the cause and where
        raise DataError(f"{path}: {_diagnose(file, fmt, err)}") from None
    if len(data) == 0:
        raise DataError(f"{path}: no data rows (a header only?)")
    # a delimiter at the end of every line (a spreadsheet's export): pandas names the empty field after it
    # "Unnamed: N"; dropped, or predictions.tsv carried a column of nothing (trial 23)
    trailing = [
        c
        for c in data.column_names
        if c.startswith("Unnamed: ") and data.data.column(c).null_count == len(data)
    ]
    if fmt == "csv":
        _say_merged_rows(data, file, "\t" if file.suffix.lower() == ".tsv" else ",")
    return data.remove_columns(trailing) if trailing else data


def _say_merged_rows(data: datasets.Dataset, file: Path, delimiter: str) -> None:
    """Warn of a quoted field that runs over lines which read as rows of their own: a quote opened in a text
    and closed a few lines later makes those lines one row, and the rows between are lost without a word. A
    line inside such a field counts as a row when it splits into the header's fields and its value in every
    column of few distinct values (a label) is one that column holds."""
    names, table = data.column_names, data.data.table
    spanning = {
        i: pc.indices_nonzero(pc.fill_null(pc.match_substring(table.column(name), "\n"), False)).to_pylist()
        for i, name in enumerate(names)
        if pa.types.is_string(table.column(name).type) or pa.types.is_large_string(table.column(name).type)
    }
    if len(names) < 2 or not any(spanning.values()):
        return
    labels = {}  # column position -> the values it holds, for columns of few distinct values
    for i, name in enumerate(names):
        values = pc.unique(table.column(name).cast(pa.string()))
        if len(values) <= max(20, len(data) // 10):
            # an empty field reads as null: "" stands for it (a spreadsheet's trailing empty column, say)
            labels[i] = {"" if v is None else v for v in values.to_pylist()}
    for i, rows in spanning.items():
        others = [j for j in labels if j != i]
        for row in rows if others else ():
            value = table.column(names[i])[row].as_py()
            merged = [
                part
                for part in value.replace("\r\n", "\n").split("\n")
                if len(fields := part.split(delimiter)) == len(names)
                and all(fields[j].strip() in labels[j] for j in others)
            ]
            if merged:
                rank_zero_warn(
                    f"{file}:{table_line(file, row)}: column {names[i]!r} holds a quoted text that runs over "
                    f"{value.count(chr(10)) + 1} lines, and {len(merged)} of them read as rows of their own "
                    f"({merged[0]!r}): a quote opened in a text and closed lines later makes them one row. "
                    'Close the quote on its line, or double the quotes inside the text ("")',
                    stacklevel=4,
                )
                return


def _diagnose(file: Path, fmt: str, err: Exception) -> str:
    cause = err.__cause__ or err
    if file.stat().st_size == 0 or not file.read_bytes()[:4096].strip():
        return "file is empty"
    if fmt == "csv" and (reason := utf8_problem(file)):  # JSON: checked before reading (load_file)
        return reason
    message = first_line(cause, 1000)
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if ragged:
        expected, line, saw = ragged.groups()
        return f"line {line} has {saw} fields, the header has {expected} (an unquoted separator in a text?)"
    if "corresponds to no data" in str(err):
        return "no data rows (a header only?)"
    if fmt == "csv" and "EOF inside string" in message:  # pandas counts rows, not lines: the quote's line
        return f"line {open_quote_line(file)}: a quote opened there is never closed (the file ends inside it)"
    if fmt == "json" and file.suffix.lower() == ".jsonl" and (bad_line := _first_bad_json_line(file)):
        line, problem = bad_line
        return f"line {line} is not a JSON object: {problem}"
    return f"could not be read as {fmt}: {message[:300]}"


def read_table(file: Path, sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A delimited file with a header, every field a string, and the line each row starts on (``csv``, as pandas
    has no line numbers: blank lines and quoted line breaks shift its row count). A row with another number of
    fields than the header stops naming its line. Raises UnicodeDecodeError on bytes that are not UTF-8."""
    with open(file, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep, quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL)
        header = next(reader, [])
        # blank (or all-space) lines before the header: skipped, and counted
        while not any(field.strip() for field in header) and reader.line_num:
            before = reader.line_num
            header = next(reader, [])
            if reader.line_num == before:  # the file's end
                break
        rows, lines, line = [], [], reader.line_num + 1
        try:
            for row in reader:
                if row:  # blank lines are skipped, and counted
                    if len(row) != len(header):
                        # which: the fields past the header's (a separator inside a value), or the last one given
                        beyond = (f"beyond its columns: {row[len(header):]!r}" if len(row) > len(header)
                                  else f"the last given: {header[len(row) - 1]!r} = {row[-1]!r}")  # fmt: skip
                        raise DataError(
                            f"{file}:{line}: {len(row)} fields, the header has {len(header)} ({beyond})"
                        )
                    rows.append(row)
                    lines.append(line)
                line = reader.line_num + 1
        except csv.Error as err:  # a field over csv's size limit: a quote left open, most likely
            raise DataError(f"{file}:{line}: {err} (a quote left open?)") from None
    return pd.DataFrame(rows, columns=header, dtype=object), np.array(lines, dtype=np.int64)


def _first_bad_json_line(file: Path) -> tuple[int, str] | None:
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                return number, f"{err.msg} (character {err.pos + 1})"
            if not isinstance(value, dict):
                return number, f"found {type(value).__name__}"
    return None


def offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_hub(name: str, config: str | None, cache: str) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(name, config, cache_dir=cache)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError, ValueError) as err:
        if isinstance(err, ConnectionError) or offline():
            raise DataError(
                f"data.dataset: {name!r} cannot be fetched from the Hugging Face Hub: this machine is offline "
                "(or the Hub is unreachable). Give local files with data.train_path/val_path/test_path instead."
            ) from None
        raise DataError(f"data.dataset: {name!r} (config {config!r}) not found: {str(err)[:300]}") from None


def table_line(file: Path, row: int) -> int:
    """The line data row ``row`` (0-based, counted as pandas counts: blank lines skipped) starts on in a
    CSV/TSV file; read up to that row, for a message."""
    return _table_record(file, row)[0]


def _short_row(split: Split, i: int) -> str:
    """For an empty field's message: `` (the row has 1 field, the header 2)`` where row ``i`` of a CSV/TSV
    split has fewer fields than its header (pandas fills the missing ones as empty), else ``""``."""
    file = _source_file(split)
    if not file.is_file() or file.suffix.lower() not in (".csv", ".tsv"):
        return ""
    _, fields, header = _table_record(file, split.source_row(i))
    return (
        f" (the row has {fields} field{'s' * (fields != 1)}, the header {header})" if fields < header else ""
    )


def _table_record(file: Path, row: int) -> tuple[int, int, int]:
    """(the line data row ``row`` starts on, its number of fields, the header's) in a CSV/TSV file."""
    with open(file, encoding="utf-8-sig", newline="") as f:
        raw: list[str] = []  # the lines of the record just read

        def lines():
            for text in f:
                raw.append(text)
                yield text

        delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
        reader = csv.reader(lines(), delimiter=delimiter)
        header = len(next(reader, []))
        raw.clear()
        line, seen = reader.line_num + 1, 0
        for fields in reader:
            # pandas skips blank and all-space lines, but not a quoted empty field ("" is a row) nor a line of
            # separators alone (a spreadsheet's empty row: tabs are white space too)
            record = "".join(raw)
            if record.strip() or delimiter in record:
                if seen == row:
                    return line, len(fields), header
                seen += 1
            raw.clear()
            line = reader.line_num + 1
    return line, header, header


def _source_file(split: Split) -> Path:
    """The file a split was read from (``train.csv [test part]``: a held-out part of that file)."""
    return Path(split.source.split(" [")[0])


def row_label(split: Split, i: int) -> str:
    """Row ``i`` of a split as a row of its source, with the file's line where the format has lines."""
    row = split.source_row(i)
    file = _source_file(split)
    suffix = file.suffix.lower() if file.exists() else ""
    if suffix in (".csv", ".tsv"):
        return f"{split.source}: row {row + 1} (line {table_line(file, row)})"
    if suffix == ".jsonl":
        return f"{split.source}: row {row + 1} (line {row + 1})"
    if suffix == ".json":
        return f"{split.source}: record {row + 1}"
    return f"{split.source}: row {row + 1}"


def check_columns(split: Split, columns: dict[str, str]) -> None:
    """Each option's column (``{"text_column": "text"}``) is one of the split's, or a DataError naming both."""
    for option, column in columns.items():
        if column not in split.data.column_names:
            found = [c for c in split.data.column_names if not c.startswith("__index_level_")]  # pandas' own
            names = ", ".join(repr(c) for c in found)
            hint = ""
            table = Path(split.source.split(" [")[0]).suffix.lower() in (".csv", ".tsv")  # a header line
            joined = next((sep for sep in (";", "\t", "|") if len(found) == 1 and sep in found[0]), None)
            if table and joined:
                hint = (f"; the header is one column holding {joined!r}: is the file separated by {joined!r}? "
                        "Save it comma-separated (.csv) or tab-separated (.tsv)")  # fmt: skip
            elif table and len(found) == 1:
                hint = "; is the first line the header (a title line above it)?"
            else:
                close = difflib.get_close_matches(column, found, n=1, cutoff=0.7)
                hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"{split.source}: no column {column!r} (data.{option}; columns: {names}){hint}")


def arrow_batches(data: datasets.Dataset, column: str, size: int = 10_000):
    """The rows of ``data`` (a subset's own rows, in order) as Arrow arrays of ``size`` values: checks read a
    batch at a time, never a whole column."""
    for batch in data.select_columns([column]).with_format("arrow").iter(batch_size=size):
        yield batch.column(column)


def text_batches(data: datasets.Dataset, column: str, size: int = 2000):
    for batch in arrow_batches(data, column, size):
        yield batch.to_pylist()


def check_header_repeats(split: Split, columns: list[str]) -> None:
    """A row whose every field is its column's name: files joined with their headers (``cat a.csv b.csv``), a
    header that would be read as an example (and its label as a class of its own)."""
    seen = 0
    for batch in split.data.select_columns(columns).with_format("arrow").iter(batch_size=10_000):
        same = [pc.equal(batch[c].cast(pa.string()), c).fill_null(False) for c in columns]
        repeats = np.flatnonzero(np.logical_and.reduce([m.to_numpy(zero_copy_only=False) for m in same]))
        if len(repeats):
            raise DataError(
                f"{row_label(split, seen + int(repeats[0]))}: repeats the header ({', '.join(columns)}): files "
                "joined with their headers? Remove the line"
            )
        seen += len(batch)


def check_texts(split: Split, column: str) -> None:
    first, count, seen = None, 0, 0
    for texts in arrow_batches(split.data, column):
        _one_type(texts, split, column)
        if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
            raise DataError(f"{split.source}: column {column!r} holds {texts.type}, not text")
        empty = pc.or_kleene(pc.is_null(texts), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0))
        bad = np.flatnonzero(empty.fill_null(True).to_numpy(zero_copy_only=False))
        if len(bad) and first is None:
            first = seen + int(bad[0])
        count, seen = count + len(bad), seen + len(texts)
    if count:
        raise DataError(f"{row_label(split, first)}: column {column!r} is empty{_short_row(split, first)} ({count} "
                        f"empty {'text' if count == 1 else 'texts'} in this split)")  # fmt: skip


def _one_type(values, split: Split, column: str) -> None:
    """JSON Lines rows whose column mixes numbers and text come as Arrow's JSON extension type, which no
    compute function takes: said with the first row whose kind differs from the split's first row's."""
    if not isinstance(values.type, pa.BaseExtensionType):
        return

    def kind(raw) -> str:
        return (
            "null" if raw in (None, "null") else "text" if raw.startswith('"') else "a number or other JSON"
        )

    first, first_row, row = None, 0, 0
    for batch in arrow_batches(split.data, column):  # the whole column: the odd row may be in any batch
        for raw in (v for chunk in getattr(batch, "chunks", [batch]) for v in chunk.storage.to_pylist()):
            if kind(raw) == "null":  # a missing value: the empty-value checks say those
                pass
            elif first is None:
                first, first_row = raw, row
            elif kind(raw) != kind(first):
                raise DataError(
                    f"{row_label(split, row)}: column {column!r} holds {raw} ({kind(raw)}) where "
                    f"{row_label(split, first_row).removeprefix(split.source + ': ')} holds {first} "
                    f"({kind(first)}): give every row the same kind (labels all as text, or all as numbers)"
                )
            row += 1
    raise DataError(
        f"{split.source}: column {column!r} holds values of several JSON kinds; give every row one kind"
    )


def label_counts(split: Split, column: str) -> dict:
    """Each distinct value of the column and the rows that hold it."""
    counts: dict = {}
    for batch in arrow_batches(split.data, column):
        _one_type(batch, split, column)
        for entry in pc.value_counts(batch).to_pylist():
            counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
    return counts


def _first_row_of(split: Split, column: str, value) -> int:
    seen = 0
    for batch in arrow_batches(split.data, column):
        found = pc.index(batch, value).as_py()
        if found >= 0:
            return seen + found
        seen += len(batch)
    return 0


def _say_doubtful_labels(split: Split, column: str, counts: dict) -> None:
    """Labels inferred from the data that look like mistakes: variants of one label (case, spaces), and a
    label held by one or two rows where another is held by ten times as many (a typo)."""
    variants: dict = {}
    for value in counts:
        if isinstance(value, str):
            variants.setdefault(value.strip().casefold(), []).append(value)
    for group in (sorted(g) for g in variants.values() if len(g) > 1):
        rank_zero_warn(
            f"{split.source}: column {column!r} holds labels that differ only in case or spaces, each its own "
            f"class: {', '.join(repr(v) for v in group)} (data.labels fixes the label set and refuses the rest)",
            stacklevel=6,
        )
    most = max(counts.values())
    rare = sorted((v for v, n in counts.items() if n <= 2 and most >= 10 * n), key=str)
    if rare:
        first = rare[0]
        others = f" (and {len(rare) - 1} more such: {', '.join(repr(v) for v in rare[1:4])}{', ...' if len(rare) > 4 else ''})"
        rank_zero_warn(
            f"{row_label(split, _first_row_of(split, column, first))}: label {first!r} is held by {counts[first]} "
            f"row(s), the most common label by {most}: a typo?{others if len(rare) > 1 else ''} Each is a class "
            "of its own (data.labels fixes the label set and refuses the rest)",
            stacklevel=6,
        )


def check_labels(split: Split, column: str, ids: dict[str, int] | None) -> None:
    """Every label of the split one of ``ids`` (as ``str`` of the value), or a DataError naming the first row
    that is not (an empty label, or one outside the set); with ``ids`` None, every label present."""
    seen = 0
    for values in arrow_batches(split.data, column):
        _one_type(values, split, column)
        unknown = [v for v in pc.unique(values).to_pylist() if ids is not None and not _blank(v)
                   and label_key(v) not in ids]  # fmt: skip
        bad = pc.is_null(values)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            bad = pc.or_(bad, pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0).fill_null(True))
        if unknown:
            bad = pc.or_(bad, pc.is_in(values, value_set=pa.array(unknown, values.type)).fill_null(False))
        flagged = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        if len(flagged):
            index = int(flagged[0])
            value = values[index].as_py()
            where = f"{row_label(split, seen + index)}: column {column!r}"
            if _blank(value):
                short = _short_row(split, seen + index)
                raise DataError(f"{where} is empty{short}: every example of a labelled split needs a label")
            shown = f"{list(ids)}" if len(ids) <= 20 else f"{list(ids)[:20]} ... ({len(ids)} in all)"
            # a part held out of the training file: the labels came from the rest of it (trial 23)
            held = (" (the labels of the training part of that file: the seeded split put every row of this class "
                    "in this part; data.labels lists every class, or give the file more rows of it)"
                    if split.source.endswith(" part]") else "")  # fmt: skip
            raise DataError(f"{where} value {value!r} is not one of the labels {shown}{held}")
        seen += len(values)


def label_key(value) -> str:
    """What a label value or a class name is matched by: a whole number read as a float (a column of numbers
    that one row with a fraction, or a missing value, made floats) is the integer, so ``2.0``, ``"2.0"`` (a name
    an earlier version saved for such a column, or a ``data.labels`` entry) and ``2`` are one class; any other
    value is its text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and re.fullmatch(r"-?\d+\.0+", value):
        return value.split(".")[0]
    return str(value)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def load_splits(
    dataset: str | None,
    dataset_config: str | None,
    paths: dict[str, str | None],
    text_column: str,
    label_column: str,
    fractions: dict[str, float | None],
    sizes: dict[str, int | None],
    seed: int,
    cache: str,
) -> tuple[dict[str, Split], list[str] | None]:
    """The labelled train/val/test splits of a hub dataset or local files: a missing validation or test split
    held out of the training data (``fractions``, seeded), subsets of ``sizes`` taken, columns checked; and the
    class names a hub dataset's labels carry (None for plain labels)."""
    if dataset is not None:
        loaded = load_hub(dataset, dataset_config, cache)
        named = {"train": "train", "val": "validation", "test": "test"}
        name = dataset + (f"/{dataset_config}" if dataset_config else "")
        raw = {
            ours: Split(loaded[theirs], f"{name} [{ours}]")
            for ours, theirs in named.items()
            if theirs in loaded
        }
        if "train" not in raw:
            raise DataError(f"data.dataset: {dataset!r} has no 'train' split (has {list(loaded)})")
    else:
        raw = {s: Split(load_file(p, f"{s}_path", cache), p) for s, p in paths.items() if p}
    class_names = None
    for split in raw.values():
        check_columns(split, {"text_column": text_column, "label_column": label_column})
        check_header_repeats(split, [text_column, label_column])
        class_names = _names_of_class_labels(split, label_column) or class_names
    train = raw["train"]
    # the whole training file's rows checked before parts are held out of it: a bad row is said as the file's
    # (row and line), and before another file's mistakes, wherever the seeded split puts it
    check_texts(train, text_column)
    check_labels(train, label_column, None)
    held = held_out_sizes(len(train.data), {s: fractions[s] for s in ("val", "test") if s not in raw})
    parts = hold_out(len(train.data), held, seed)
    if len(parts["train"]) == 0:
        raise DataError(f"{train.source}: no training examples left after the held-out splits")
    for s in held:
        raw[s] = train.select(parts[s].materialize(sort=True), f"{train.source} [{s} part]")
    raw["train"] = train.select(parts["train"].materialize(sort=True))
    for k, name in enumerate(("train", "val", "test")):
        source = raw[name].source + (
            f" (its size: data.{name}_fraction of the training data)" if name in held
            else " (what the held-out parts left)" if name == "train" and held else ""
        )  # fmt: skip
        subset = seeded_subset(len(raw[name].data), sizes.get(name), seed, k, f"data.{name}_size", source)
        if subset is not None:
            raw[name] = raw[name].select(subset.materialize(sort=True))
    keep = [text_column, label_column]
    return {s: Split(d.data.select_columns(keep), d.source, d.rows) for s, d in raw.items()}, class_names


def _names_of_class_labels(split: Split, column: str) -> list[str] | None:
    """Hub labels are ids with names: keep the names, as strings, so every source labels the same way."""
    feature = split.data.features[column]
    if not isinstance(feature, datasets.ClassLabel):
        return None
    features = datasets.Features({**split.data.features, column: datasets.Value("string")})
    split.data = split.data.cast_column(column, datasets.Value("int64")).map(
        lambda b: {column: feature.int2str(b[column])}, batched=True, features=features
    )
    return list(feature.names)


def label_names(train: Split, column: str, given: list | None, class_names: list[str] | None) -> list[str]:
    """The class names in id order: as given, else a hub dataset's, else the sorted distinct training labels."""
    if given is not None:
        labels = [str(v) for v in given]
        if len(set(map(label_key, labels))) != len(labels):
            raise DataError(f"data.labels: {given} has repeated labels")
        if len(labels) < 2:
            raise DataError(f"data.labels: {given} lists fewer than 2 labels; a classifier needs 2 or more")
        held = {label_key(v) for v in label_counts(train, column) if not _blank(v)}
        unused = [label for label in labels if label_key(label) not in held]
        if unused:
            rank_zero_warn(
                f"data.labels: {', '.join(map(repr, unused))} held by no training row of {train.source} (column "
                f"{column!r}): a class the model is never trained on (a typo in data.labels, or a class whose "
                "every row the held-out splits took?)",
                stacklevel=6,
            )
    elif class_names is not None:
        labels = class_names
    else:
        counts = {v: n for v, n in label_counts(train, column).items() if not _blank(v)}
        values = list(counts)
        _not_a_target(train, column, values)
        labels = [label_key(v) for v in sorted(values)]
        if counts:
            _say_doubtful_labels(train, column, counts)
    if len(labels) < 2:
        raise DataError(f"{train.source}: column {column!r} has fewer than 2 labels: {labels}")
    return labels


def _not_a_target(train: Split, column: str, values: list) -> None:
    """Text tasks classify: a column of fractional numbers (a score to regress) or of a different value in
    almost every row (an id, a free-text field) is refused rather than made into thousands of classes."""
    fraction = next((v for v in values if isinstance(v, float) and not v.is_integer()), None)
    if fraction is not None:
        raise DataError(
            f"{row_label(train, _first_row_of(train, column, fraction))}: column {column!r} holds a number with a "
            f"fraction ({fraction!r}; {len(values)} distinct values in the column): text tasks classify, and a "
            "class label is a name or a whole number; is this column a "
            "score to regress rather than a label? (data.label_column chooses the label column)"
        )
    rows = len(train.data)
    if len(values) > 1000 and len(values) > rows // 2:
        raise DataError(
            f"{train.source}: column {column!r} has {len(values)} distinct values in {rows} rows, too many to be "
            f"class labels (e.g. {sorted(map(str, values))[:3]}); is it an id or a text column? "
            "(data.label_column chooses the label column, data.labels lists the classes)"
        )
