"""Text corpora that reach these machines inside Debian packages, read without the programs that made them.

- Jane Austen's six novels, from ``r-cran-janeaustenr``: an R lazy-load database (``Rdata.rdb``), a sequence
  of objects, each a 4-byte big-endian length then a zlib stream of R's XDR serialization (format 3, "R
  Internals" 1.8) of a character vector, one element per line of the novel.
- Python 3.11's documentation, from ``python3.11-doc``: a GNU Info file, nodes separated by the 0x1f byte,
  each opening with a ``File: ..., Node: ...`` line.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from archbench.errors import DataError

AUSTEN_RDB = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
PYTHON_INFO = "usr/share/info/python3.11.info.gz"
# Title lines as the novels open in janeaustenr, in order of publication.
AUSTEN_TITLES = {
    "SENSE AND SENSIBILITY": "1-sense-and-sensibility",
    "PRIDE AND PREJUDICE": "2-pride-and-prejudice",
    "MANSFIELD PARK": "3-mansfield-park",
    "EMMA": "4-emma",
    "NORTHANGER ABBEY": "5-northanger-abbey",
    "PERSUASION": "6-persuasion",
}

_STRSXP, _CHARSXP = 16, 9
_UTF8, _LATIN1 = 1 << 3, 1 << 2  # CHARSXP encoding bits (in the flags' "levels", above bit 12)


class _XDR:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def int(self) -> int:
        if self.pos + 4 > len(self.data):
            raise DataError(f"{self.where}: ends inside an R object (byte {self.pos})")
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def r_character_vector(serialized: bytes, where: str) -> list[str | None]:
    """A character vector from R's XDR serialization (``X\\n`` format 2 or 3); NA is None."""
    r = _XDR(serialized, where)
    if r.bytes(2) != b"X\n":
        raise DataError(f"{where}: not R's XDR serialization (no 'X\\n' header)")
    version = r.int()
    r.int(), r.int()  # the writer's R version, the oldest that reads it
    if version == 3:
        r.bytes(r.int())  # native encoding name
    flags = r.int()
    if flags & 0xFF != _STRSXP:
        raise DataError(f"{where}: R object of type {flags & 0xFF}, expected a character vector (16)")
    n = r.int()
    if n == -1:  # a long vector: its length in two ints
        n = (r.int() << 32) + r.int()
    out: list[str | None] = []
    for _ in range(n):
        flags = r.int()
        if flags & 0xFF != _CHARSXP:
            raise DataError(f"{where}: element {len(out)} has R type {flags & 0xFF}, expected a string (9)")
        length = r.int()
        if length == -1:
            out.append(None)
            continue
        levels = flags >> 12
        out.append(r.bytes(length).decode("latin-1" if levels & _LATIN1 and not levels & _UTF8 else "utf-8"))
    return out


def r_lazyload_vectors(rdb: bytes, where: str) -> list[list[str | None]]:
    """Every object of an R lazy-load database, read as character vectors, in file order."""
    vectors, pos = [], 0
    while pos < len(rdb):
        (size,) = struct.unpack_from(">I", rdb, pos)
        inflater = zlib.decompressobj()
        try:
            serialized = inflater.decompress(rdb[pos + 4 :])
        except zlib.error as err:
            raise DataError(f"{where}: byte {pos + 4}: not a zlib stream ({err})") from None
        if len(serialized) != size:
            raise DataError(
                f"{where}: object at byte {pos} inflates to {len(serialized)} bytes, header says {size}"
            )
        vectors.append(r_character_vector(serialized, f"{where} (object at byte {pos})"))
        pos = len(rdb) - len(inflater.unused_data)
    return vectors


def austen_novels(rdb: bytes, where: str) -> dict[str, str]:
    """{file stem: text} of the six novels, named by their opening title line, lines joined by newlines
    (janeaustenr's empty elements are the blank lines between paragraphs)."""
    novels = {}
    for lines in r_lazyload_vectors(rdb, where):
        title = next((line.strip() for line in lines if line and line.strip()), "")
        title = title.upper()
        if title not in AUSTEN_TITLES:
            raise DataError(f"{where}: an object opening with {title[:40]!r} is not one of the six novels")
        novels[AUSTEN_TITLES[title]] = "\n".join(line or "" for line in lines) + "\n"
    if len(novels) != len(AUSTEN_TITLES):
        raise DataError(f"{where}: found {sorted(novels)}, expected the six novels")
    return dict(sorted(novels.items()))


def info_nodes(info_gz: bytes) -> list[str]:
    """The text of every node of a gzipped GNU Info file (its ``File:`` header line dropped), in order;
    the preamble, tag tables and the local-variables trailer left out."""
    text = gzip.decompress(info_gz).decode("utf-8")
    nodes = []
    for part in text.split("\x1f")[1:]:
        header, _, body = part.lstrip("\n").partition("\n")
        if header.startswith("File:") and body.strip():
            nodes.append(body.strip("\n") + "\n")
    return nodes


def deb_member(deb: Path, member: str) -> bytes:
    """One file out of a Debian package (``dpkg-deb -x`` into a scratch folder; no root needed)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True)
        if result.returncode != 0:
            raise DataError(f"{deb}: could not be unpacked: {result.stderr.strip()[-300:]}")
        path = Path(tmp) / member
        if not path.is_file():
            raise DataError(f"{deb}: has no {member}")
        return path.read_bytes()
