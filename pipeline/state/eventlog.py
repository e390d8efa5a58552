"""The append-only event log inside the state database: every event as its exact JSON line, in order.

    log = EventLog(conn, SQLITE)
    log.append([(seq, "submitted", line)])    # inside the caller's transaction
    log.compact()                             # old events into compressed blocks (its own transactions)
    log.payloads([12, 40])                    # {12: '{"event":"submitted",...}', 40: ...}
    for line in log.lines(): ...              # the whole log in order: the audit export

New events go to ``events``, one row each, in the transaction that changes the state they caused. Once
enough have accumulated, ``compact`` moves the oldest into ``event_blocks``: runs of consecutive seqs
stored as one zlib-compressed JSON Lines text (about 7x smaller: the log is most of a job's bytes, and
nobody reads old events but the audit export and a results line's pointers). A block never changes after
it is written; a seq keeps its meaning whether its event is still loose or in a block.
"""

from __future__ import annotations

import bisect
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from pipeline.state.dialect import Dialect

__all__ = ["BLOCK_EVENTS", "EventLog"]

# Events per compressed block: 3% bigger than 2048-event blocks, and a lookup decompresses 8x less.
BLOCK_EVENTS: Final = 256
_KEEP_LOOSE: Final = BLOCK_EVENTS  # compact once this many more are loose
_LEVEL: Final = 6
_IN_CHUNK: Final = 500  # seqs per "IN (...)" lookup (SQLite allows 32766 parameters, PostgreSQL 65535)
_CACHED_BLOCKS: Final = 16
_INFLATE_STEP: Final = 16 * 1024  # bytes of text per step when a block is inflated only part way


class EventLog:
    """Appends to, compacts and reads the log of one database connection."""

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect
        self._insert = dialect.sql("INSERT INTO events (seq, kind, payload) VALUES (?, ?, ?)")
        self._blocks: OrderedDict[int, tuple[int, list[str]]] = OrderedDict()  # first_seq -> (last, lines)
        self.loose = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        """The highest seq in the log (0 when empty)."""
        loose = self._conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        # Blocks are runs of seqs that never overlap: the last one by its key ends highest (a MAX over
        # last_seq, which has no index, reads every block's row: tens of MB at a million rows).
        block = self._conn.execute(_LAST_BLOCK).fetchone()
        return max(loose or 0, block[0] if block else 0)

    def append(self, items: Sequence[tuple[int, str, str]]) -> None:
        """Insert ``(seq, kind, json line)`` rows; the caller owns the transaction."""
        self._conn.executemany(self._insert, items)

    def appended(self, count: int) -> None:
        """Note that ``count`` more loose events were committed."""
        self.loose += count

    @property
    def due(self) -> bool:
        """Whether enough loose events accumulated for ``compact`` to write a block."""
        return self.loose >= BLOCK_EVENTS + _KEEP_LOOSE

    def compact(self, *, keep: int = _KEEP_LOOSE) -> int:
        """Move the oldest loose events into blocks, leaving about ``keep`` loose; blocks written."""
        written = 0
        while self.loose - keep >= BLOCK_EVENTS or (keep == 0 and self.loose > 0):
            if not self._compact_one():
                break
            written += 1
        return written

    def _compact_one(self) -> bool:
        conn, sql = self._conn, self._dialect.sql
        conn.execute(self._dialect.begin_write)
        try:
            oldest = conn.execute(
                sql("SELECT seq, payload FROM events ORDER BY seq LIMIT ?"), (BLOCK_EVENTS,)
            ).fetchall()
            run = _consecutive(oldest)
            if not run:
                conn.execute("ROLLBACK")
                return False
            first, last = run[0][0], run[-1][0]
            data = zlib.compress("\n".join(line for _, line in run).encode(), _LEVEL)
            conn.execute(
                sql("INSERT INTO event_blocks (first_seq, last_seq, data) VALUES (?, ?, ?)"),
                (first, last, data),
            )
            conn.execute(sql("DELETE FROM events WHERE seq >= ? AND seq <= ?"), (first, last))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.loose -= len(run)
        return True

    def payloads(self, seqs: Iterable[int]) -> dict[int, str]:
        """The JSON line of each seq (missing seqs are left out)."""
        wanted = sorted(set(seqs))
        found: dict[int, str] = {}
        query = "SELECT seq, payload FROM events WHERE seq IN ({})"
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.update(self._conn.execute(self._dialect.sql(query.format(marks)), chunk).fetchall())
        for seq in wanted:
            if seq not in found and (line := self._from_block(seq)) is not None:
                found[seq] = line
        return found

    def _from_block(self, seq: int) -> str | None:
        for first, (last, lines) in self._blocks.items():
            if first <= seq <= last:
                return lines[seq - first]
        row = self._conn.execute(
            self._dialect.sql(
                "SELECT first_seq, last_seq, data FROM event_blocks WHERE first_seq <= ? "
                "ORDER BY first_seq DESC LIMIT 1"
            ),
            (seq,),
        ).fetchone()
        if row is None or seq > row[1]:
            return None
        first, last, data = int(row[0]), int(row[1]), bytes(row[2])
        lines = _lines(data)
        self._blocks[first] = (last, lines)
        if len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return lines[seq - first]

    def payloads_in_order(self, seqs: Iterable[int]) -> dict[int, str]:
        """``payloads`` for many seqs at once: each block they fall in is read and decompressed once
        (what a results table of a million rows needs), whatever the block cache holds, and only as far
        as its last wanted line (a plan reading one line in a block inflates half of it, on average)."""
        wanted = sorted(set(seqs))
        found = self._loose(wanted)
        missing = [seq for seq in wanted if seq not in found]
        i = 0
        while i < len(missing):
            row = self._conn.execute(self._dialect.sql(_BLOCK_OF), (missing[i],)).fetchone()
            if row is None or missing[i] > row[1]:
                i += 1
                continue
            first, last = int(row[0]), int(row[1])
            end = bisect.bisect_right(missing, last, lo=i)
            lines = _block_lines(bytes(row[2]), [seq - first for seq in missing[i:end]], last - first)
            found.update(zip(missing[i:end], lines, strict=True))
            i = end
        return found

    def _loose(self, wanted: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        query = "SELECT seq, payload FROM events WHERE seq IN ({})"
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.update(self._conn.execute(self._dialect.sql(query.format(marks)), chunk).fetchall())
        return found

    def since(self, seq: int) -> Iterator[tuple[int, str]]:
        """``(seq, line)`` of every event after ``seq``, in order (what changed since then). Call inside a
        read transaction when another connection may compact meanwhile."""
        sql = self._dialect.sql
        for first, data in self._conn.execute(sql(_BLOCKS_AFTER), (seq,)).fetchall():
            for offset, line in enumerate(_lines(bytes(data))):
                if first + offset > seq:
                    yield first + offset, line
        yield from self._conn.execute(
            sql("SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq"), (seq,)
        )

    def lines(self) -> Iterator[str]:
        """Every event's JSON line in seq order: blocks first (they hold the oldest), then loose ones.

        Call inside a read transaction when another connection may compact meanwhile.
        """
        for (data,) in self._conn.execute("SELECT data FROM event_blocks ORDER BY first_seq"):
            yield from _lines(data)
        for (line,) in self._conn.execute("SELECT payload FROM events ORDER BY seq"):
            yield line


_BLOCK_OF: Final = (
    "SELECT first_seq, last_seq, data FROM event_blocks WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1"
)
_LAST_BLOCK: Final = "SELECT last_seq FROM event_blocks ORDER BY first_seq DESC LIMIT 1"
_BLOCKS_AFTER: Final = "SELECT first_seq, data FROM event_blocks WHERE last_seq > ? ORDER BY first_seq"


def _consecutive(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The leading run of ``rows`` whose seqs follow each other (a block's lines are indexed by seq)."""
    for i in range(1, len(rows)):
        if rows[i][0] != rows[i - 1][0] + 1:
            return rows[:i]
    return rows


def _lines(data: bytes) -> list[str]:
    return zlib.decompress(data).decode().split("\n")


def _block_lines(data: bytes, offsets: Sequence[int], span: int) -> list[str]:
    """The lines at ``offsets`` (ascending) of a block of ``span + 1`` lines: inflated only as far as
    the last of them, unless that is near the end anyway; split only from the first of them on,
    counting from the end of what was inflated (a plan wants one line of most blocks: splitting and
    decoding less saves a tenth of its reading)."""
    if offsets[-1] < span * 3 // 4:
        text, newlines = _inflate_through(data, offsets[-1])
    elif len(offsets) > span // 2:  # most of the block (a results table): one decode and split is less
        lines = _lines(data)
        return [lines[offset] for offset in offsets]
    else:
        text, newlines = zlib.decompress(data), span
    pieces = text.rsplit(b"\n", newlines - offsets[0] + 1)
    first = len(pieces) - newlines - 1  # pieces[first + n] is line n
    return [pieces[first + offset].decode() for offset in offsets]


def _inflate_through(data: bytes, line: int) -> tuple[bytes, int]:
    """At least the first ``line + 1`` lines of a block (all of it when they are all there is), and
    how many newlines that text has."""
    inflater = zlib.decompressobj()
    parts: list[bytes] = []
    newlines, pending = 0, data
    while newlines <= line and not inflater.eof:
        part = inflater.decompress(pending, _INFLATE_STEP)
        pending = inflater.unconsumed_tail
        if not part:  # nothing more came out: a whole decompress reads it (or says what is wrong)
            text = zlib.decompress(data)
            return text, text.count(b"\n")
        parts.append(part)
        newlines += part.count(b"\n")
    return b"".join(parts), newlines
