"""Files: written whole or not at all, folders checked before a run writes, and where a text file stops being UTF-8."""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from archbench.errors import ConfigError, DataError

HASHED_BYTES = (
    64 * 2**20
)  # a bigger file is known by its size and time: hashing it would cost each run seconds


def fingerprint(path: Path, exclude: Path | None = None) -> str:
    """What a settings check compares of a file or folder a run reads, so one changed in place (same path, other
    contents) is told apart: the SHA-256 of a file's bytes, or over ``HASHED_BYTES`` its size and modification
    time; for a folder (images in class folders, a tokenizer's files) a SHA-256 over every file's relative path,
    size and modification time, without reading the files: hidden files and folders (``.cache``, ``.git``) and
    anything under ``exclude`` (a comparison's output inside the folder) left out."""
    if path.is_dir():
        listing = hashlib.sha256()
        count = 0
        skip = exclude.resolve() if exclude is not None else None
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
            if hidden or (skip is not None and file.resolve().is_relative_to(skip)):
                continue
            stat = file.stat()
            listing.update(f"{file.relative_to(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            count += 1
        return f"files:{count},listing-sha256:{listing.hexdigest()}"  # one word: settings lines end in it
    stat = path.stat()
    if stat.st_size > HASHED_BYTES:
        return f"size:{stat.st_size},mtime_ns:{stat.st_mtime_ns}"
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


# Besides ``*_path``: the settings whose folder a run reads (images, a tokenizer, pretrained weights)
FOLDER_KEYS = ("root", "tokenizer", "path", "weights")


def data_fingerprints(settings, exclude: Path | None = None, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """The files that ``settings`` (plain config data: mappings and lists) name, and the folders of the settings
    read as data (``*_path`` and ``FOLDER_KEYS``: not a cache), each with its ``fingerprint``; settings named in
    ``skip`` and anything under ``exclude`` (a comparison's output) left out."""
    found: dict[str, str] = {}

    def walk(value, key: str = "") -> None:
        if key in skip:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)
        elif isinstance(value, str | Path) and 0 < len(str(value)) < 4096 and "\n" not in str(value):
            path = Path(value)
            if str(path) in found:
                return
            if path.is_file() or (path.is_dir() and (key.endswith("_path") or key in FOLDER_KEYS)):
                found[str(path)] = fingerprint(path, exclude=exclude)

    walk(settings)
    return found


def change_stamp(path: Path) -> str:
    """What a cache of a file's contents is keyed on (with its path): size, modification and change time, read
    from the file's metadata without reading it. The change time (``ctime``) is the kernel's, set on every write
    and every ``utime``: a file edited in place and given its old modification time back (``cp -p``, ``rsync -a``,
    ``tar x``) has a new one, which a key of size and modification time alone missed (trial 18). A ``chmod`` or a
    rename makes a new one too: a cache built again, never a stale one used."""
    stat = path.stat()
    return f"size:{stat.st_size},mtime_ns:{stat.st_mtime_ns},ctime_ns:{stat.st_ctime_ns}"


def not_found(option: str, path: str | Path) -> str:
    """What a data option's missing file is said as: the option, the path, and for a relative path the folder it
    was looked for in (a run's saved config.yaml keeps paths as given, relative to where ``fit`` ran)."""
    relative = "" if Path(path).is_absolute() else f" (relative to the working folder {Path.cwd()})"
    return f"{option}: file {str(path)!r} not found{relative}"


def saved_json(spec: str, option: str, what: str):
    """The content of a ``.json`` file a run saved (a tokenizer, a vocabulary) that option ``option`` names; None
    when ``spec`` names no ``.json`` file (another kind of spec); a DataError when it is missing or not JSON."""
    import json

    path = Path(spec)
    if path.suffix != ".json":
        return None
    if not path.is_file():
        raise DataError(f"{option}: {spec}: file not found ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{option}: {spec}: not a JSON file ({err})") from None


def check_writable(path: str | Path, option: str | None = None) -> None:
    """A ConfigError when ``path``, a file to write, is an existing folder (or sits below a file)."""
    path, said = Path(path), f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise ConfigError(f"{said}: is a folder; give the name of a file to write")
    _refuse_file_above(path, said)


def check_folder(path: str | Path, option: str) -> None:
    """A ConfigError when ``path``, a folder to write into, is a file (or sits below one)."""
    path = Path(path)
    if path.is_file():
        raise ConfigError(f"{option}: {path} is a file, not a folder")
    _refuse_file_above(path, f"{option}: {path}")


def _refuse_file_above(path: Path, said: str) -> None:
    """A file where a folder above ``path`` goes, or a folder above it nothing can be written in (read-only,
    ``/proc``, no permission): tried with a folder made there and removed, since ``os.access`` says yes to root
    on a read-only file system."""
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        if parent != path:
            raise ConfigError(f"{said}: {parent} is a file, not a folder")
        parent = path.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".archbench-", dir=parent))
    except OSError as err:
        raise ConfigError(f"{said}: nothing can be written in {parent} ({err.strerror})") from None


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file beside ``path`` that is flushed to disk and renamed into place when the block ends; on an
    error (or a kill) ``path`` keeps its previous content and the partial file is removed (or left as
    ``.tmp-PID`` after a kill, never under the real name)."""
    path = Path(path)
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on one filesystem: the temporary file sits in the same folder
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, payload: bytes | str) -> None:
    """Write ``payload`` beside ``path`` and rename it into place: a reader (or a kill) never sees half a file."""
    with atomic_writer(path) as f:
        f.write(payload.encode() if isinstance(payload, str) else payload)


class NpyStream:
    """A 1-D ``.npy`` file written in pieces (``append``), for arrays larger than memory: the pieces go to a
    raw file beside the target, and ``close`` writes the header and the data into place atomically."""

    def __init__(self, path: str | Path, dtype):
        self.path, self.dtype, self.count = Path(path), np.dtype(dtype), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw_path = self.path.with_name(self.path.name + f".raw-{os.getpid()}")
        self._raw = open(self._raw_path, "wb")  # noqa: SIM115 (closed by close or discard)

    def append(self, values) -> None:
        array = np.ascontiguousarray(values, dtype=self.dtype)
        self._raw.write(array.tobytes())
        self.count += len(array)

    def close(self) -> None:
        self._raw.close()
        try:
            with atomic_writer(self.path) as out, open(self._raw_path, "rb") as src:
                header = {"descr": self.dtype.str, "fortran_order": False, "shape": (self.count,)}
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(src, out, 2**20)
        finally:
            self._raw_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self._raw.close()
        self._raw_path.unlink(missing_ok=True)


def build_folder_once(path: Path, build) -> None:
    """Make the folder ``path`` with ``build(tmp)`` unless it is complete (has ``meta.json``, written last):
    one process builds (behind a file lock; the others wait, then find it), in a scratch folder renamed into
    place, so a killed build never leaves a folder that looks complete."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "meta.json").exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
        try:
            build(tmp)
            if path.exists():  # a half-written folder left by a killed run
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _open_binary(path: Path) -> BinaryIO:
    return open(path, "rb")  # noqa: SIM115 (closed by the caller's with)


def open_quote_line(
    file: Path, delimiter: str = ",", opener: Callable[[Path], BinaryIO] | None = None
) -> int:
    """The line of a CSV/TSV ``file`` on which the record that never closes its quote starts (``csv`` in strict
    mode stops at the file's end inside it); pandas says the row, which blank lines and quoted line breaks shift.
    ``opener``: how to open the file's bytes (a gzipped file's), else as it is."""
    with (opener or _open_binary)(file) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
        reader, start = csv.reader(f, delimiter=delimiter, strict=True), 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error:
            return start
    return start


def first_non_utf8(
    file: Path, block: int = 1 << 20, opener: Callable[[Path], BinaryIO] | None = None
) -> tuple[int, int, int] | None:
    """(byte, line, byte value) of the first byte that is not UTF-8, its byte and line counted from 1 as ``cmp``
    counts them (and as a field's byte is counted), reading a block at a time; ``opener`` (a binary stream of the
    file, say a gzip file's decompressed bytes) when not ``open(file, "rb")``."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = line = 0
    with (opener or _open_binary)(file) as f:
        while chunk := f.read(block):
            pending = decoder.getstate()[0]  # the end of the last block, when it split a character
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:  # err.start counts from the pending bytes
                data = pending + chunk
                return (
                    offset - len(pending) + err.start + 1,
                    line + data[: err.start].count(b"\n") + 1,
                    data[err.start],
                )
            offset, line = offset + len(chunk), line + chunk.count(b"\n")
    pending = decoder.getstate()[0]
    if pending:  # the file ends inside a character
        return offset - len(pending) + 1, line + 1, pending[0]
    return None


def utf8_problem(file: Path, opener: Callable[[Path], BinaryIO] | None = None) -> str | None:
    """Where ``file`` stops being UTF-8, said as every reader says it; None when it is UTF-8 throughout."""
    bad = first_non_utf8(file, opener=opener)
    if bad is None:
        return None
    byte, line, value = bad
    if byte == 1:
        with (opener or _open_binary)(file) as f:
            start = f.read(2)
        if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # what Windows tools save as "Unicode"
            return f"not UTF-8 text: UTF-16 (it starts with the byte-order mark 0x{start.hex()}); save the file as UTF-8"
    return f"not UTF-8 text: byte {byte} (line {line}) is 0x{value:02x}; save the file as UTF-8"


def not_utf8(file: Path, opener: Callable[[Path], BinaryIO] | None = None) -> str:
    """``utf8_problem`` with the file's name, for a file known not to be UTF-8."""
    return f"{file}: {utf8_problem(file, opener)}"
