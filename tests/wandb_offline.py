"""Read an offline W&B run (``run-<id>.wandb``) back from disk, for tests.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of
records, each a 7-byte header (crc32, length, type) and a slice of a serialized ``Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str | Path, wait: float = 10.0) -> list[wandb_internal_pb2.Record]:
    """The file's records. W&B's service writes the file on its own after ``finish()`` returns: a record cut short
    at the end (a busy machine) is read again, every 0.2 s for up to ``wait`` seconds, before it counts as
    corrupt."""
    for _ in range(int(wait / 0.2)):
        try:
            return _records(path)
        except DecodeError:
            time.sleep(0.2)
    return _records(path)


def _records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a .wandb file"
    pos, out, pending = 7, [], b""
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            pending = chunk
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE:
            pending += chunk
            continue
        elif kind == _LAST:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        out.append(record)
    return out


def read_run(path: str | Path) -> dict:
    """{"run": {id, group, name, tags, ...}, "config": {...}, "history": [{key: value}], "summary": {...},
    "exit_code": the status the run finished with (None while unfinished)}."""
    run, config, history, summary, exit_code = {}, {}, [], {}, None
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = {
                "id": r.run.run_id,
                "group": r.run.run_group,
                "name": r.run.display_name,
                "tags": list(r.run.tags),
                "job_type": r.run.job_type,
            }
            for item in r.run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in r.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            )
        elif kind == "summary":
            for item in r.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            exit_code = r.exit.exit_code
    return {"run": run, "config": config, "history": history, "summary": summary, "exit_code": exit_code}


def find_runs(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob("run-*.wandb"))
