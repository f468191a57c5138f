"""Writing files whole or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file beside ``path`` that is flushed to disk and renamed into place when the block ends; on an
    error (or a kill) ``path`` keeps its previous content and the partial file is removed (or left as
    ``.tmp-PID`` after a kill, never under the real name)."""
    path = Path(path)
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
