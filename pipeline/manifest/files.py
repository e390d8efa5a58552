"""Opening manifest-like files (CSV, Parquet, JSON Lines) lazily with polars, with clear errors.

Every problem with a file as a whole becomes a ``ManifestError`` naming the file and, for text formats,
the line::

    lf = scan_table(Path("jobs/demo.csv"))          # pl.LazyFrame; CSV columns are all strings
    with table_errors(path):                        # polars/OS errors -> ManifestError
        lf.collect()
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from pipeline.errors import ManifestError

__all__ = ["FORMATS", "Snapshot", "file_format", "scan_table", "table_errors"]

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def file_format(path: Path) -> str:
    """``csv``, ``parquet`` or ``jsonl`` from the file's suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(path, f"unsupported file type {path.suffix!r} (use .csv, .parquet or .jsonl)")
    return fmt


def scan_table(path: Path) -> pl.LazyFrame:
    """A lazy frame over ``path`` whose schema is known to be readable."""
    fmt = file_format(path)
    if not path.exists():
        raise ManifestError(path, "no such file")
    if not path.is_file():
        raise ManifestError(path, "not a file")
    if path.stat().st_size == 0:
        raise ManifestError(path, "the file is empty (not even a header line)")
    with table_errors(path):
        if fmt == "csv":
            _check_csv_header(path)
            lf = pl.scan_csv(path, infer_schema=False, raise_if_empty=True)
        elif fmt == "parquet":
            lf = pl.scan_parquet(path)
        else:
            lf = pl.scan_ndjson(path, infer_schema_length=None)  # a column may first appear late
        lf.collect_schema()
    return lf


class Snapshot:
    """A Parquet copy of a table (plus a 1-based ``_row``) in a private temp folder, read back in slices.

    Written in one pass, so every byte of the source is decoded (and any error raised) before the
    first batch; read back one row group at a time, so memory stays flat in the table's size, and a
    file edited during a run cannot change what the run reads.
    """

    def __init__(self, lf: pl.LazyFrame, source: Path, row_group_size: int) -> None:
        _remove_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        try:
            with table_errors(source):
                if file_format(source) == "parquet":
                    self._copy_slices(lf, row_group_size)
                else:
                    lf.with_row_index("_row", offset=1).sink_parquet(
                        self.folder / "0.parquet", row_group_size=row_group_size, compression="lz4"
                    )
        except BaseException:
            self.close()
            raise
        self.lf = pl.scan_parquet(self.folder / "*.parquet")
        self.rows: int = self.lf.select(pl.len()).collect().item()

    def _copy_slices(self, lf: pl.LazyFrame, size: int) -> None:
        """A Parquet source, slice by slice (each read only its row groups), one file each: the
        streaming engine would read such a file ahead of the writer, into memory (1 GB for 10M rows)."""
        offset = 0
        while True:
            frame = lf.slice(offset, size).collect()
            if frame.height or not offset:  # an empty table still leaves its schema
                part = self.folder / f"{offset:015d}.parquet"
                frame.with_row_index("_row", offset=offset + 1).write_parquet(part, compression="lz4")
            if frame.height < size:
                return
            offset += frame.height

    def slices(
        self, size: int, exprs: Sequence[pl.Expr] | None = None, where: pl.Expr | None = None
    ) -> Iterator[pl.DataFrame]:
        """The table ``size`` rows at a time (the last slice may be shorter): every column, or
        ``exprs`` of each row; only the rows ``where`` keeps (a slice may then be empty)."""
        offset = 0
        while offset < self.rows:
            part = self.lf.slice(offset, size)
            part = part if where is None else part.filter(where)
            yield (part if exprs is None else part.select(exprs)).collect()
            offset += size

    def close(self) -> None:
        self._cleanup()


def _check_csv_header(path: Path) -> None:
    """polars silently renames a repeated column (``id_duplicated_0``); a repeated name is an error."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ManifestError(path, f"column {name!r} appears more than once in the header")
        seen.add(name)


_PREFIX = "pipeline-manifest-"


def _remove_orphans() -> None:
    """Remove snapshots left by processes that were killed (SIGKILL skips every cleanup)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name.removeprefix(_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: leave its folder alone
        return True
    return True


@contextmanager
def table_errors(path: Path) -> Iterator[None]:
    """Translate polars and OS errors about ``path`` into a ``ManifestError`` with a useful reason."""
    try:
        yield
    except ManifestError:
        raise
    except pl.exceptions.NoDataError:
        raise ManifestError(path, "the file is empty (not even a header line)") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, _reason(path, exc)) from None


def _reason(path: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "parquet":
        return f"not a readable Parquet file (truncated or corrupt?): {detail}"
    located = _locate_text_problem(path, fmt) if fmt else None
    kind = "CSV" if fmt == "csv" else "JSON Lines"
    return f"not a valid {kind} file: {located or detail}"


def _locate_text_problem(path: Path, fmt: str) -> str | None:
    """Find the first bad line of a text file (slow path, only after polars refused the file)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"line {number} is not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
    text = raw.decode("utf-8")
    return _csv_problem(text) if fmt == "csv" else _jsonl_problem(text)


def _csv_problem(text: str) -> str | None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        header = next(reader, [])
        start = reader.line_num + 1
        for fields in reader:
            if len(fields) > len(header):
                return f"line {reader.line_num} has {len(fields)} fields, the header has {len(header)}"
            start = reader.line_num + 1
    except csv.Error as exc:
        if "end of data" in str(exc):
            return f"the row starting on line {start} has an unclosed quote"
        return f"line {reader.line_num}: {exc}"
    return None


def _jsonl_problem(text: str) -> str | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object"
    return None
