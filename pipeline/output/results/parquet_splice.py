"""Parquet row groups copied byte for byte from other Parquet files into a new one: no decoding.

    template = Footer.of_bytes(empty_frame_parquet_bytes)    # the schema and key-value metadata to write
    with open(tmp, "wb") as out:
        splice = Splice(out, template)
        footer = Footer.read(old)                            # old: a binary file open for reading
        if footer.layout == template.layout and footer.splicable(0):
            splice.copy(old, footer, 0)                      # row group 0 of old, as it is
        splice.close()                                       # the footer: every group copied, in order

A Parquet file is ``PAR1``, its column chunks, then a footer (a Thrift compact-protocol ``FileMetaData``)
that lists each row group's column chunks by byte offset. A row group moves to another file by copying its
chunks and shifting those offsets: two files whose schemas are encoded alike (``layout``) can share row
groups. Page indexes and bloom filters live outside the chunks and are dropped from a copied group (they
only speed up reads). The codec keeps every field it does not edit as it was read, so a footer read and
written again is the same bytes.
"""

from __future__ import annotations

import functools
import io
import itertools
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Final

from pipeline.errors import SpliceError

__all__ = ["Footer", "Splice", "SpliceError", "extract"]

_MAGIC: Final = b"PAR1"
_COPY_CHUNK: Final = 1 << 20

# Thrift compact protocol types
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_INTS: Final = (_I16, _I32, _I64)

# Field ids (parquet.thrift)
_FILE_SCHEMA, _FILE_NUM_ROWS, _FILE_ROW_GROUPS, _FILE_COLUMN_ORDERS, _FILE_ENCRYPTION = 2, 3, 4, 7, 8
_GROUP_COLUMNS, _GROUP_NUM_ROWS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 3, 5, 7
_CHUNK_PATH, _CHUNK_FILE_OFFSET, _CHUNK_META = 1, 2, 3
_CHUNK_DROPPED: Final = (4, 5, 6, 7)  # offset index and column index: outside the chunk
_CHUNK_ENCRYPTED: Final = (8, 9)
_META_SIZE, _META_DATA_PAGE, _META_INDEX_PAGE, _META_DICTIONARY_PAGE = 7, 9, 10, 11
_META_PATH, _META_STATISTICS = 3, 12
_META_DROPPED: Final = (14, 15)  # bloom filter: outside the chunk
_STATS_MAX, _STATS_MIN = 5, 6  # max_value, min_value (the older max and min order bytes as signed)

Struct = dict[int, tuple[int, Any]]  # field id -> (compact type, value), in the order read


# -- the Thrift compact protocol -------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def struct(self) -> Struct:
        fields: Struct = {}
        last = 0
        while (head := self.byte()) != _STOP:
            kind = head & 0x0F
            last = last + (head >> 4) if head >> 4 else self.zigzag()
            fields[last] = (kind, kind == _TRUE if kind in (_TRUE, _FALSE) else self.value(kind))
        return fields

    def value(self, kind: int) -> Any:
        if kind in _INTS:
            return self.zigzag()
        if kind == _BINARY:
            size = self.varint()
            self.pos += size
            return self.data[self.pos - size : self.pos]
        if kind == _STRUCT:
            return self.struct()
        if kind in (_LIST, _SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            element = head & 0x0F
            return element, [self.element(element) for _ in range(size)]
        if kind == _BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if kind == _DOUBLE:
            self.pos += 8
            return self.data[self.pos - 8 : self.pos]
        if kind == _MAP:
            size = self.varint()
            types = self.byte() if size else 0
            key, value = types >> 4, types & 0x0F
            return types, [(self.element(key), self.element(value)) for _ in range(size)]
        raise SpliceError(f"unknown Thrift compact type {kind}")

    def element(self, kind: int) -> Any:
        return self.byte() == _TRUE if kind in (_TRUE, _FALSE) else self.value(kind)


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, value: int) -> None:
        while value >= 0x80:
            self.out.append((value & 0x7F) | 0x80)
            value >>= 7
        self.out.append(value)

    def zigzag(self, value: int) -> None:
        self.varint((value << 1) ^ (value >> 63))

    def struct(self, fields: Struct) -> None:
        last = 0
        for key, (kind, value) in fields.items():
            if kind in (_TRUE, _FALSE):
                kind = _TRUE if value else _FALSE
            if 0 < key - last <= 15:
                self.out.append((key - last) << 4 | kind)
            else:
                self.out.append(kind)
                self.zigzag(key)
            last = key
            if kind not in (_TRUE, _FALSE):
                self.value(kind, value)
        self.out.append(_STOP)

    def value(self, kind: int, value: Any) -> None:
        if kind in _INTS:
            self.zigzag(value)
        elif kind == _BINARY:
            self.varint(len(value))
            self.out += value
        elif kind == _STRUCT:
            self.struct(value)
        elif kind in (_LIST, _SET):
            element, items = value
            if len(items) < 15:
                self.out.append(len(items) << 4 | element)
            else:
                self.out.append(0xF0 | element)
                self.varint(len(items))
            for item in items:
                self.element(element, item)
        elif kind == _BYTE:
            self.out += struct.pack("b", value)
        elif kind == _DOUBLE:
            self.out += value
        elif kind == _MAP:
            types, pairs = value
            self.varint(len(pairs))
            if pairs:
                self.out.append(types)
            for key, item in pairs:
                self.element(types >> 4, key)
                self.element(types & 0x0F, item)
        else:
            raise SpliceError(f"unknown Thrift compact type {kind}")

    def element(self, kind: int, value: Any) -> None:
        if kind in (_TRUE, _FALSE):
            self.out.append(_TRUE if value else _FALSE)
        else:
            self.value(kind, value)


def _encode(fields: Struct) -> bytes:
    writer = _Writer()
    writer.struct(fields)
    return bytes(writer.out)


# -- footers ---------------------------------------------------------------------------------------------


@dataclass
class Footer:
    """A Parquet file's ``FileMetaData``, decoded; ``start``: where it begins in its file."""

    fields: Struct
    start: int
    _group_spans: list[tuple[int, int] | None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def read(cls, f: IO[bytes]) -> Footer:
        """The footer of the Parquet file ``f`` (a binary file open for reading)."""
        size = f.seek(0, 2)
        if size < 12:
            raise SpliceError("not a Parquet file: too short")
        f.seek(size - 8)
        tail = f.read(8)
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != _MAGIC or length > size - 12:
            raise SpliceError("not a Parquet file: no footer")
        f.seek(size - 8 - length)
        return cls._decode(f.read(length), size - 8 - length)

    @classmethod
    def of_bytes(cls, data: bytes) -> Footer:
        """The footer of a whole Parquet file held in memory."""
        length = int.from_bytes(data[-8:-4], "little")
        if data[-4:] != _MAGIC or length > len(data) - 12:
            raise SpliceError("not a Parquet file: no footer")
        return cls._decode(data[-8 - length : -8], len(data) - 8 - length)

    @classmethod
    def _decode(cls, data: bytes, start: int) -> Footer:
        try:
            fields = _Reader(data).struct()
        except IndexError as exc:
            raise SpliceError("truncated Parquet footer") from exc
        return cls(fields, start)

    def encode(self) -> bytes:
        return _encode(self.fields)

    @functools.cached_property
    def layout(self) -> bytes:
        """The schema as encoded (and how its statistics order values): files that agree on it can share
        row groups."""
        return _encode({k: v for k, v in self.fields.items() if k in (_FILE_SCHEMA, _FILE_COLUMN_ORDERS)})

    @property
    def groups(self) -> list[Struct]:
        return list(self.fields.get(_FILE_ROW_GROUPS, (_LIST, (_STRUCT, [])))[1][1])

    def group_rows(self, index: int) -> int:
        return int(self.groups[index][_GROUP_NUM_ROWS][1])

    def group_span(self, index: int) -> tuple[int, int] | None:
        """``(start, end)``: the bytes of row group ``index``'s column chunks (and of what a writer put
        between them, such as the chunks' own copies of their metadata), when its chunks are plain
        (unencrypted, in this file) and no other group's bytes lie among them; else None."""
        spans = self._spans()
        span = spans[index]
        if (
            span is None
            or _FILE_ENCRYPTION in self.fields
            or any(
                other is not None and other[0] < span[1] and span[0] < other[1]
                for i, other in enumerate(spans)
                if i != index
            )
        ):
            return None
        return span

    def bounds(self, index: int, column: str) -> tuple[bytes, bytes] | None:
        """``(min, max)`` of the top-level ``column`` in row group ``index``, as its statistics store
        them (plain encoding: a string's UTF-8), when they have them; else None."""
        for chunk in self.groups[index][_GROUP_COLUMNS][1][1]:
            meta = chunk.get(_CHUNK_META, (_STRUCT, {}))[1]
            if meta.get(_META_PATH, (_LIST, (_BINARY, [])))[1][1] == [column.encode()]:
                stats = meta.get(_META_STATISTICS, (_STRUCT, {}))[1]
                if _STATS_MIN in stats and _STATS_MAX in stats:
                    return bytes(stats[_STATS_MIN][1]), bytes(stats[_STATS_MAX][1])
                return None
        return None

    def _spans(self) -> list[tuple[int, int] | None]:
        if self._group_spans is None:
            self._group_spans = [_span(group) for group in self.groups]
        return self._group_spans


def _span(group: Struct) -> tuple[int, int] | None:
    chunks: list[tuple[int, int]] = []
    for chunk in group[_GROUP_COLUMNS][1][1]:
        if _CHUNK_PATH in chunk or _CHUNK_META not in chunk or any(k in chunk for k in _CHUNK_ENCRYPTED):
            return None
        meta = chunk[_CHUNK_META][1]
        begin = meta[_META_DATA_PAGE][1]
        dictionary = meta.get(_META_DICTIONARY_PAGE, (_I64, 0))[1]
        begin = min(begin, dictionary) if dictionary > 0 else begin
        chunks.append((begin, begin + meta[_META_SIZE][1]))
    chunks.sort()
    if not chunks or any(a[1] > b[0] for a, b in itertools.pairwise(chunks)):
        return None
    return chunks[0][0], chunks[-1][1]


def _shifted(group: Struct, delta: int, ordinal: int) -> Struct:
    """A row group's metadata for its chunks moved by ``delta`` bytes, without what lies outside them."""

    def shift(fields: Struct, key: int) -> None:
        if key in fields:
            kind, value = fields[key]
            fields[key] = (kind, value + delta if value > 0 else value)

    moved = dict(group)
    shift(moved, _GROUP_FILE_OFFSET)
    if _GROUP_ORDINAL in moved:
        moved[_GROUP_ORDINAL] = (_I16, ordinal)
    chunks = []
    for chunk in group[_GROUP_COLUMNS][1][1]:
        chunk = {k: v for k, v in chunk.items() if k not in _CHUNK_DROPPED}
        meta = {k: v for k, v in chunk[_CHUNK_META][1].items() if k not in _META_DROPPED}
        for key in (_META_DATA_PAGE, _META_INDEX_PAGE, _META_DICTIONARY_PAGE):
            shift(meta, key)
        chunk[_CHUNK_META] = (_STRUCT, meta)
        shift(chunk, _CHUNK_FILE_OFFSET)
        chunks.append(chunk)
    kind, (element, _) = group[_GROUP_COLUMNS]
    moved[_GROUP_COLUMNS] = (kind, (element, chunks))
    return moved


# -- splicing ---------------------------------------------------------------------------------------------


class Splice:
    """Writes a Parquet file into ``out`` (a binary file open for writing, at its start) from row groups
    of other Parquet files whose ``layout`` is the template's; ``close`` writes the template's footer
    (schema, key-value metadata) listing them."""

    def __init__(self, out: IO[bytes], template: Footer) -> None:
        self._out = out
        self._template = template
        self._groups: list[Struct] = []
        self._rows = 0
        self._pos = out.write(_MAGIC)

    @property
    def template(self) -> Footer:
        """The footer the file gets (its row groups aside)."""
        return self._template

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return self._rows

    def copy(self, src: IO[bytes], footer: Footer, index: int) -> None:
        """Append row group ``index`` of ``src`` (whose footer is ``footer``) as it is."""
        if footer.layout != self._template.layout:
            raise SpliceError("the row group's file has another schema")
        span = footer.group_span(index)
        if span is None:
            raise SpliceError(f"row group {index} cannot be copied (its chunks are not contiguous)")
        start, end = span
        src.seek(start)
        _copy(src.read, self._out.write, end - start)
        self._groups.append(_shifted(footer.groups[index], self._pos - start, len(self._groups)))
        self._pos += end - start
        self._rows += footer.group_rows(index)

    def copy_all(self, data: bytes) -> None:
        """Append every row group of the whole Parquet file ``data`` (held in memory)."""
        footer = Footer.of_bytes(data)
        source = io.BytesIO(data)
        for index in range(len(footer.groups)):
            self.copy(source, footer, index)

    def close(self) -> None:
        """Write the footer. The file is then complete (the caller flushes and closes ``out``)."""
        fields = dict(self._template.fields)
        if _FILE_ENCRYPTION in fields:
            raise SpliceError("an encrypted template")
        fields[_FILE_NUM_ROWS] = (_I64, self._rows)
        fields[_FILE_ROW_GROUPS] = (_LIST, (_STRUCT, self._groups))
        footer = _encode(fields)
        self._out.write(footer + len(footer).to_bytes(4, "little") + _MAGIC)


def extract(src: IO[bytes], footer: Footer, indexes: Iterable[int]) -> bytes:
    """A Parquet file (in memory) of row groups ``indexes`` of ``src`` (whose footer is ``footer``):
    what a reader that takes a whole file reads one row group through (or none: just the schema)."""
    out = io.BytesIO()
    splice = Splice(out, footer)
    for index in indexes:
        splice.copy(src, footer, index)
    splice.close()
    return out.getvalue()


def _copy(read: Callable[[int], bytes], write: Callable[[bytes], int], size: int) -> None:
    while size > 0:
        chunk = read(min(size, _COPY_CHUNK))
        if not chunk:
            raise SpliceError("the Parquet file ended inside a row group")
        write(chunk)
        size -= len(chunk)
