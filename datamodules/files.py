"""Writing files whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, payload: bytes | str) -> None:
    """Write ``payload`` beside ``path`` and rename it into place: a reader (or a kill) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    os.replace(tmp, path)
