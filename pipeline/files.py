"""Files written whole or not at all: a temp file beside the target, fsynced, renamed over it.

    write_atomic(out / "results.csv", frame.write_csv)        # write(file) into a binary temp file
    sink_atomic(out / "results.parquet", lazy.sink_parquet)   # sink(path) for writers that take a path
    replace_durably(temp, state)                               # a file made elsewhere takes the name

After a crash a reader finds the old file or the new one, never half of one: the temp file is fsynced
before the rename, and the folder after it (so the rename itself survives a power cut). A failure
removes the temp file and raises ``PipelineError`` naming the file and the reason. Temp files are named
``.<name>.<random>.tmp`` (``pipeline.output.results.write.remove_stale_temps`` clears those a killed
write left).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

from pipeline.errors import PipelineError

__all__ = ["replace_durably", "sink_atomic", "write_atomic"]


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(file)`` (a binary file) whole or not at all."""

    def into(tmp: Path) -> None:
        with tmp.open("wb") as f:
            write(f)

    return sink_atomic(path, into)


def sink_atomic(path: Path, sink: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``sink(tmp)`` (which writes the temp file at that path) whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        sink(tmp)
        replace_durably(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PipelineError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    return path


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it over ``path``, then fsync the folder."""
    _fsync(tmp)
    os.replace(tmp, path)
    with suppress(OSError):  # some filesystems cannot fsync a folder; the rename itself is still atomic
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
