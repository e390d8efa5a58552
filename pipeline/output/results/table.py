"""The results table file, written row group by row group: the lines kept from the previous table, then
the new ones, in memory one row group at a time.

    write_table(tmp, Lines(parts, job, mark, previous=table, touched=keys, maybe=keys_it_may_show))

A row group of the previous table that holds none of the touched rows is copied as it is, byte for byte
(``pipeline.output.results.parquet_splice``): a run that touches 1% of a million-line table decodes none
of the other 99% (rows first sent since the table was written cannot be in it; for the others, the
groups' ``id`` statistics and then their ``id, fingerprint`` columns say which groups hold them). The
groups that must change (touched lines to drop, a job renamed, a column whose type widens, the small
groups at the table's end) are decoded, and their lines written again with the new ones, in row groups of
``ROW_GROUP`` lines. Columns: the documented ones (``RESULTS_COLUMNS``) first, then the passthrough ones
as they first appear; a passthrough column whose types differ between pages becomes text (JSON).
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import polars as pl

from pipeline.errors import SpliceError
from pipeline.output.results.lines import LINE_COLUMNS, RESULTS_COLUMNS
from pipeline.output.results.parquet_splice import Footer, Splice, extract

__all__ = ["ROW_GROUP", "SMALL_GROUP", "Lines", "Parts", "write_table", "write_table_csv"]

ROW_GROUP: Final = 32_768  # lines per row group written
SMALL_GROUP: Final = 8_192  # the table's last groups below this are written again with the next lines
_KEY: Final = ["id", "fingerprint"]
_ORDER: Final = [*LINE_COLUMNS, "job"]


@dataclass
class Lines:
    """What a table is made of: the new lines (``parts``: Parquet files of ``_ORDER`` columns, then
    passthrough) and, from the previous table, every line but those of the ``touched`` rows. ``maybe``:
    the touched rows that may have a line there (the others are new since it was written)."""

    parts: list[Path]
    job: str | None
    mark: dict[str, str]
    previous: Path | None = None
    previous_job: str | None = None
    touched: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=dict.fromkeys(_KEY, pl.String)))
    maybe: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=dict.fromkeys(_KEY, pl.String)))


class Parts:
    """New lines as Parquet files in ``folder``, for ``Lines.parts``: pages of lines (``_ORDER`` columns,
    then passthrough) gathered into row groups of ``ROW_GROUP`` lines, which ``write_table`` copies as
    they are when they have the table's columns."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[Path] = []
        self._pending: list[pl.DataFrame] = []
        self._rows = 0

    def add(self, lines: pl.DataFrame) -> None:
        if self._pending and lines.schema != self._pending[0].schema:
            self.close()  # pages of other columns: files of their own, typed when the table is written
        self._pending.append(lines)
        self._rows += lines.height
        whole = self._rows - self._rows % ROW_GROUP
        if whole:
            gathered = pl.concat(self._pending, how="vertical")
            self._write(gathered.slice(0, whole))
            rest = gathered.slice(whole)
            self._pending, self._rows = [rest], rest.height

    def close(self) -> list[Path]:
        """Write what is left; the files, in order."""
        if self._rows:
            self._write(pl.concat(self._pending, how="vertical"))
        self._pending, self._rows = [], 0
        return self.paths

    def _write(self, lines: pl.DataFrame) -> None:
        path = self.folder / f"{len(self.paths):06d}.parquet"
        lines.write_parquet(path, row_group_size=ROW_GROUP)
        self.paths.append(path)


def write_table(path: Path, lines: Lines) -> None:
    """Write the table of ``lines`` to ``path`` (a new file: the caller renames it into place)."""
    try:
        _write_table(path, lines, text=False)
    except pl.exceptions.PolarsError:  # a passthrough column's values cannot take the common type (a
        _write_table(path, lines, text=True)  # list where others have strings): those columns as text


def _write_table(path: Path, lines: Lines, *, text: bool) -> None:
    with path.open("wb") as out, _Source.open(lines.previous) as previous:
        schemas = [pl.Schema(RESULTS_COLUMNS)]
        schemas += [previous.schema] if previous else []
        schemas += [pl.Schema(pl.read_parquet_schema(part)) for part in lines.parts]
        shape = _Shape.of(schemas, lines.job, text=text)
        splice = Splice(out, shape.template(lines.mark))
        pending = _Pending(splice, shape)
        if previous is not None:
            _keep(previous, lines, shape, pending)
        for part in lines.parts:
            _add_part(part, shape, pending)
        pending.flush()
        splice.close()
    _check_reads_back(path, splice.rows, shape.schema)


def _check_reads_back(path: Path, rows: int, schema: pl.Schema) -> None:
    """The spliced file, read by polars: its footer parses, with every line and column expected."""
    try:
        found = pl.scan_parquet(path).select(pl.len()).collect().item()
        columns = pl.read_parquet_schema(path)
    except pl.exceptions.PolarsError as exc:
        raise SpliceError(f"the spliced table does not read back: {exc}") from exc
    if found != rows or list(columns) != list(schema):
        raise SpliceError(f"the spliced table reads back {found} lines of {rows}, or other columns")


def write_table_csv(table: Path, out: IO[bytes]) -> None:
    """``table`` (a results table) as CSV into ``out``, a row group at a time: lists and structs as JSON."""
    with _Source.open(table) as source:
        assert source is not None
        if not source.groups:
            _csv_safe(pl.DataFrame(schema=source.schema)).write_csv(out)
        for index in source.groups:
            _csv_safe(source.group(index)).write_csv(out, include_header=index == 0)


# -- the columns -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """The table's columns and types, and what turns any page of lines into them."""

    schema: pl.Schema  # in the table's order
    text: frozenset[str]  # passthrough columns whose types differ between pages: written as JSON text
    job: str | None

    @classmethod
    def of(cls, schemas: list[pl.Schema], job: str | None, *, text: bool = False) -> _Shape:
        """Every column of ``schemas``, in order of appearance, typed as a concatenation would type it;
        with ``text``, a column whose types differ between schemas is text."""
        texts: frozenset[str] = frozenset()
        if text:
            found: dict[str, set[pl.DataType]] = {}
            for schema in schemas:
                for name, dtype in schema.items():
                    found.setdefault(name, set()).add(dtype)
            texts = frozenset(name for name, types in found.items() if len(types) > 1)
        merged = _merged([{n: pl.String if n in texts else t for n, t in s.items()} for s in schemas])
        rest = [name for name in merged if name not in _ORDER]
        schema = pl.Schema({name: merged[name] for name in (*_ORDER, *rest)})
        return cls(schema, texts, job)

    def template(self, mark: dict[str, str]) -> Footer:
        """The footer of a table of these columns with ``mark`` in its metadata."""
        buffer = io.BytesIO()
        pl.DataFrame(schema=self.schema).write_parquet(buffer, metadata=mark)
        return Footer.of_bytes(buffer.getvalue())

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the table's columns (missing ones null), types and job."""
        if self.text:
            frame = _as_text(frame, [name for name in frame.columns if name in self.text])
        empty = pl.DataFrame(schema=self.schema)
        frame = pl.concat([empty, frame.drop("job", strict=False)], how="diagonal_relaxed")
        return frame.with_columns(job=pl.lit(self.job, dtype=pl.String))

    def fits(self, schema: pl.Schema) -> bool:
        """Whether lines of ``schema`` are already the table's (order and types) and need no text."""
        return schema == self.schema and not self.text


def _merged(schemas: list[Any]) -> pl.Schema:
    frames = [pl.LazyFrame(schema=schema) for schema in schemas]
    return pl.concat(frames, how="diagonal_relaxed").collect_schema()


def _as_text(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    def text(value: Any) -> str | None:
        plain = value.to_list() if isinstance(value, pl.Series) else value
        return plain if plain is None or isinstance(plain, str) else json.dumps(plain, default=str)

    return frame.with_columns(
        pl.Series(name, [text(v) for v in frame[name].to_list()], dtype=pl.String) for name in names
    )


def _csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if not nested:
        return frame

    def text(value: Any) -> str:
        return json.dumps(value.to_list() if isinstance(value, pl.Series) else value)

    return frame.with_columns(pl.col(name).map_elements(text, return_dtype=pl.String) for name in nested)


# -- writing ---------------------------------------------------------------------------------------------


class _Pending:
    """Lines waiting to be written, flushed in row groups of ``ROW_GROUP`` lines."""

    def __init__(self, splice: Splice, shape: _Shape) -> None:
        self.splice = splice
        self.shape = shape
        self.frames: list[pl.DataFrame] = []
        self.rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self.frames.append(self.shape.conform(frame))
            self.rows += frame.height
        while self.rows >= ROW_GROUP:
            lines = pl.concat(self.frames, how="vertical")
            self._write(lines.slice(0, ROW_GROUP))
            rest = lines.slice(ROW_GROUP)
            self.frames, self.rows = ([rest] if rest.height else []), rest.height

    def copy(self, source: _Source, index: int) -> bool:
        """Copy row group ``index`` of ``source`` as it is, after what waits; False if it cannot be."""
        if source.footer.group_span(index) is None:
            return False
        self.flush()
        self.splice.copy(source.file, source.footer, index)
        return True

    def flush(self) -> None:
        """Write what waits (a smaller group): before a group is copied as it is, and at the end."""
        if self.rows:
            self._write(pl.concat(self.frames, how="vertical"))
            self.frames, self.rows = [], 0

    def _write(self, lines: pl.DataFrame) -> None:
        buffer = io.BytesIO()
        lines.write_parquet(buffer, row_group_size=ROW_GROUP)
        self.splice.copy_all(buffer.getvalue())


class _Source:
    """A Parquet file of lines, open: its footer, its schema and its row groups to read (each through a
    file of its own in memory, from the same open file: a table replaced meanwhile changes nothing)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.file = f
        self.footer = Footer.read(f)
        self.schema = pl.Schema(pl.read_parquet_schema(io.BytesIO(extract(f, self.footer, []))))

    @classmethod
    @contextmanager
    def open(cls, path: Path | None) -> Iterator[_Source | None]:
        """``with _Source.open(path) as source``: None when there is no file to read."""
        if path is None:
            yield None
            return
        with path.open("rb") as f:
            yield cls(f)

    @property
    def groups(self) -> range:
        return range(len(self.footer.groups))

    def group(self, index: int, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(extract(self.file, self.footer, [index])), columns=columns)

    def fits(self, shape: _Shape, template: Footer) -> bool:
        """Whether its row groups can be copied into a table of ``shape`` as they are."""
        return shape.fits(self.schema) and self.footer.layout == template.layout

    def may_hold(self, index: int, ids: list[bytes]) -> bool:
        """Whether row group ``index`` may hold one of ``ids`` (UTF-8, sorted), from its statistics."""
        bounds = self.footer.bounds(index, "id")
        if bounds is None:
            return True
        at = bisect.bisect_left(ids, bounds[0])
        return at < len(ids) and ids[at] <= bounds[1]


def _keep(previous: _Source, lines: Lines, shape: _Shape, pending: _Pending) -> None:
    """The previous table's lines but the touched rows': groups copied as they are when they can be
    (all but those holding a touched row and the small ones at the end)."""
    copyable = lines.previous_job == lines.job and previous.fits(shape, pending.splice.template)
    tail = len(previous.groups)
    while tail > 0 and previous.footer.group_rows(tail - 1) < SMALL_GROUP:
        tail -= 1
    dirty = set(_holding(previous, lines.maybe, range(tail))) if copyable else set()
    for index in previous.groups:
        if copyable and index < tail and index not in dirty and pending.copy(previous, index):
            continue
        group = previous.group(index)
        pending.add(group.join(lines.touched, on=_KEY, how="anti", maintain_order="left"))


def _holding(previous: _Source, keys: pl.DataFrame, indexes: range) -> Iterator[int]:
    """The row groups among ``indexes`` that hold a line of one of ``keys``."""
    if keys.is_empty():
        return
    ids = sorted({id.encode() for id in keys["id"].to_list()})  # statistics order strings bytewise
    for index in indexes:
        if previous.may_hold(index, ids):
            found = previous.group(index, _KEY).join(keys, on=_KEY, how="semi")
            if found.height:
                yield index


def _add_part(path: Path, shape: _Shape, pending: _Pending) -> None:
    """New lines: a page's row groups copied when they are big and already in the table's columns (and
    would leave no small group behind them), else written again with the lines around them."""
    with _Source.open(path) as part:
        assert part is not None
        copyable = part.fits(shape, pending.splice.template)
        for index in part.groups:
            if (
                copyable
                and part.footer.group_rows(index) >= SMALL_GROUP
                and (pending.rows == 0 or pending.rows >= SMALL_GROUP)
                and pending.copy(part, index)
            ):
                continue
            pending.add(part.group(index))
