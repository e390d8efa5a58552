"""The job's state: an embedded SQLite database (WAL) in ``output_dir/state.db``.

    with Store.open(spec.out_dir / STATE_NAME, job=spec.name) as store:   # creates or upgrades
        store.record(SubmittedEvent(...))        # committed (durably, see durability) when it returns
        store.record_many(events)                # one transaction: group commit
        store.row_state(row.id, row.fingerprint) # "succeeded" / "failed" / "in_doubt" / "pending" / None
        task_uuid_for(store.namespace, fp, store.next_attempt(fp))
        store.in_doubt()                         # submitted tasks with no answer: reconcile them first
        store.spent_usd()                        # Decimal, exact

Every event is kept in the append-only log (``eventlog``) in the transaction that applies it to the
derived tables, through the same rule a fold of the 0.1 ledger uses (``pipeline.state.rule``). Reads are
indexed lookups or running totals: nothing here replays the log but ``export_jsonl``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Final, TypeVar

from pipeline.errors import StoreError
from pipeline.state.changes import Changes, ImageRow, OpenSubmit, StoredRow
from pipeline.state.dialect import SQLITE
from pipeline.state.durability import Durability, GroupSync, synchronous_pragma
from pipeline.state.eventlog import EventLog
from pipeline.state.events import (
    Event,
    JobEvent,
    SubmittedEvent,
    SucceededEvent,
    event_from_dict,
    event_to_json,
)
from pipeline.state.keys import FINGERPRINT, TASK
from pipeline.state.rule import FAILED, IN_DOUBT, ROW_STATES, SUCCEEDED, PendingDownload, RowFacts
from pipeline.state.schema import COUNTERS, ensure_schema

__all__ = ["STATE_NAME", "RowSummary", "Store", "StoreError", "Verdict"]

STATE_NAME: Final = "state.db"
_IN_CHUNK: Final = 500  # keys per "IN (...)" lookup
E = TypeVar("E", SubmittedEvent, SucceededEvent)
_DIALECT = SQLITE  # the one line a PostgreSQL store changes (with its driver's connect)
_q = _DIALECT.sql


@dataclass(frozen=True, slots=True)
class RowSummary:
    """One (id, fingerprint) as the state knows it."""

    state: str
    attempts: int  # submitted events of this row (``next_attempt`` counts per fingerprint)
    images: int  # images of its first success


@dataclass(frozen=True, slots=True)
class Verdict:
    """A row with a results line: its verdict event (first success, else the failure for good) and the
    submitted event it answered (else the row's last one)."""

    id: str
    fingerprint: str
    state: str
    attempts: int
    verdict_seq: int
    submit_seq: int | None


class Store:
    """One connection to a job's state database. Build with ``Store.open``. One writer per database (the
    job lock), and calls on one Store must not overlap (one task, or one thread at a time)."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, durability: Durability, group_commit_ms: float
    ) -> None:
        self.path = path
        self._conn = conn
        self.commits_wait_for_disk = durability == "always"  # each commit fsyncs before it returns
        self._group_commit_s = group_commit_ms / 1000 if durability == "group" else None  # background fsync
        self._sync: GroupSync | None = None  # started by the first commit (a reader never starts one)
        self._log = EventLog(conn, _DIALECT)
        self._next_seq = self._log.last_seq() + 1
        self._has_job = self.header() is not None

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        job: str | None = None,
        durability: Durability = "group",
        group_commit_ms: float = 200.0,
        read_only: bool = False,
    ) -> Store:
        """Open (creating or upgrading) the database at ``path``; with ``job``, a new one gets its header
        (a ``job`` event with a fresh random namespace for the task UUIDs). ``read_only``: an existing
        database of the current version, never created nor written (a second reader of an open store)."""
        path = Path(path)
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            target = f"{path.resolve().as_uri()}?mode=ro" if read_only else path
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=read_only)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # new: settings kept in the file
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # compact() gives freed pages back
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous_pragma(durability)}")
            ensure_schema(conn, _DIALECT, name=str(path))
            store = cls(conn, path, durability, group_commit_ms)
            if job is not None and not store._has_job:
                store.record(JobEvent(namespace=str(uuid.uuid4()), job=job))
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return store

    # -- writing ---------------------------------------------------------------------------------------

    def record(self, event: Event) -> int:
        """Append ``event`` and apply it, in one transaction; its seq. Committed when this returns."""
        return self.record_many((event,))

    def record_many(self, events: Iterable[Event]) -> int:
        """Append and apply ``events`` in order in ONE transaction (one commit, one fsync); the last seq."""
        return self.record_lines((event, event.kind, event_to_json(event)) for event in events)

    def record_lines(self, items: Iterable[tuple[Event | None, str, str]]) -> int:
        """``record_many`` for ``(event or None, kind, exact JSON line)``: keeps a line as it was read (an
        import of a ledger), and a kind this version does not know (``None``: logged, not applied)."""
        self._raise_sync_error()
        seq = self._next_seq
        rows: list[tuple[int, str, str]] = []
        conn = self._conn
        try:
            conn.execute(_DIALECT.begin_write)
            try:
                changes = Changes(_Reader(conn), job_known=self._has_job)
                for event, kind, line in items:
                    changes.apply(seq, event)
                    rows.append((seq, kind, line))
                    seq += 1
                self._log.append(rows)
                changes.write(conn, _DIALECT)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record {len(rows)} event(s): {exc}") from exc
        self._next_seq = seq
        self._has_job = self._has_job or changes.job is not None
        self._log.appended(len(rows))
        if self._group_commit_s is not None:
            if self._sync is None:
                self._sync = GroupSync(self.path, self._group_commit_s)
            self._sync.mark()
        if self._log.due:
            self.compact(keep_loose=True)
        return seq - 1

    def compact(self, *, keep_loose: bool = False) -> int:
        """Compress old events into blocks (all of them, and give the freed pages back to the file system,
        unless ``keep_loose``); blocks written."""
        try:
            if keep_loose:
                return self._log.compact()
            written = self._log.compact(keep=0)
            self._conn.executescript("PRAGMA incremental_vacuum")  # executes every step
            return written
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot compact the event log: {exc}") from exc

    def _raise_sync_error(self) -> None:
        if self._sync is not None and self._sync.error is not None:
            exc, self._sync.error = self._sync.error, None
            raise StoreError(f"{self.path}: cannot fsync: {exc.strerror or exc}") from exc

    # -- reading ---------------------------------------------------------------------------------------

    def header(self) -> JobEvent | None:
        """The job's name and namespace (None before the first ``job`` event)."""
        row = self._conn.execute("SELECT name, namespace, created_at FROM job").fetchone()
        return None if row is None else JobEvent(job=row[0], namespace=row[1], at=row[2])

    @property
    def namespace(self) -> str:
        """The namespace of the job's task UUIDs."""
        header = self.header()
        if header is None:
            raise StoreError(f"{self.path}: the state has no job header yet")
        return header.namespace

    def row_state(self, id: str, fingerprint: str) -> str | None:
        """The row's state, or None if the state has never seen it."""
        row = self._conn.execute(_q(_STATE), (id, FINGERPRINT.pack(fingerprint))).fetchone()
        return None if row is None else str(row[0])

    def row(self, id: str, fingerprint: str) -> RowSummary | None:
        """State, attempts and images of a row, or None if the state has never seen it."""
        found = _Reader(self._conn).row(id, fingerprint)
        if found is None:
            return None
        return RowSummary(found.facts.state, found.facts.attempts, found.facts.images)

    def row_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """State of each (id, fingerprint) the state has seen (unseen keys are left out).

        Looks the ids up on the primary key's leading column (a row-value ``IN`` would scan the table)
        and keeps the fingerprints asked for: an id has one or a few.
        """
        found: dict[tuple[str, str], str] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            wanted = {(i, FINGERPRINT.pack(f)): (i, f) for i, f in keys[start : start + _IN_CHUNK]}
            ids = list({i for i, _ in wanted})
            query = f"SELECT id, fingerprint, state FROM rows WHERE id IN ({', '.join('?' * len(ids))})"
            for id, fp, state in self._conn.execute(_q(query), ids):
                key = wanted.get((id, bytes(fp)))
                if key is not None:
                    found[key] = state
        return found

    def unfinished(self, ids: Sequence[str], digests: Sequence[bytes]) -> list[tuple[int, str | None, bool]]:
        """The rows of a manifest batch that are not done, in one statement: ``(position, state, seen)``
        of each whose (id, fingerprint) has not succeeded. ``state``: that (id, fingerprint)'s, None when
        never sent; ``seen``: whether the state knows the id at all (under any fingerprint).

        ``digests``: each row's fingerprint as its 32 raw bytes (``keys.FINGERPRINT.pack`` of its hex),
        in the order of ``ids``. Each row is one indexed lookup inside the database; a done row (most
        rows of a nightly run) costs no Python object.
        """
        blob = b"".join(digests)
        if len(digests) != len(ids) or len(blob) != FINGERPRINT.size * len(ids):
            raise ValueError(f"one {FINGERPRINT.size}-byte digest per id is needed")
        if not ids:
            return []
        found = self._conn.execute(_q(_UNFINISHED), (_json_list(ids), blob))
        return [(int(pos), state, bool(seen)) for pos, state, seen in found]

    def succeeded_fingerprints(self, ids: Sequence[str]) -> list[tuple[str, str]]:
        """``(id, fingerprint)`` of every succeeded row of ``ids`` (one statement)."""
        if not ids:
            return []
        found = self._conn.execute(_q(_SUCCEEDED_OF), (_json_list(ids),))
        return [(id, FINGERPRINT.unpack(fp)) for id, fp in found]

    def next_attempt(self, fingerprint: str) -> int:
        """Attempt number for a new taskUUID of ``fingerprint`` (never reuses one)."""
        return _Reader(self._conn).attempt(fingerprint) + 1

    def attempts(self) -> dict[str, int]:
        """Fingerprint -> highest attempt submitted (every fingerprint: for tests and audits)."""
        found = self._conn.execute("SELECT fingerprint, attempt FROM attempts")
        return {FINGERPRINT.unpack(fp): int(n) for fp, n in found}

    def in_doubt(self) -> list[SubmittedEvent]:
        """Submitted tasks of in-doubt rows, oldest first: reconcile them before anything else."""
        seqs = [s for (s,) in self._conn.execute(_IN_DOUBT)]
        lines = self._log.payloads(seqs)
        return [_submitted(lines[s]) for s in seqs]

    def in_doubt_count(self) -> int:
        """How many rows are in doubt (a running total)."""
        return self.counts()["in_doubt"]

    def uploads(self) -> dict[str, str]:
        """sha256 of a local reference -> its Runware image UUID."""
        return dict(self._conn.execute("SELECT sha256, image_uuid FROM uploads"))

    def upload_for(self, sha256: str) -> str | None:
        """The image UUID of an uploaded content, if it was uploaded."""
        row = self._conn.execute(_q(_UPLOAD), (sha256,)).fetchone()
        return None if row is None else str(row[0])

    def undownloaded(self) -> list[PendingDownload]:
        """Images of succeeded rows not on disk yet, oldest first."""
        pending = self._conn.execute(_UNDOWNLOADED).fetchall()
        lines = self._log.payloads({seq for _, _, seq, _ in pending})
        return [_pending(lines[seq], TASK.unpack(task), index, ext) for task, index, seq, ext in pending]

    def pending_download(self, task_uuid: str, index: int) -> PendingDownload | None:
        """The image if it waits for a download (None: downloaded, or not an image of a first success)."""
        found = self._conn.execute(_q(_PENDING), (TASK.pack(task_uuid), index)).fetchone()
        if found is None:
            return None
        seq, ext = found
        return _pending(self._log.payloads([seq])[seq], task_uuid, index, ext)

    def last_submitted(self, ids: Sequence[str]) -> list[SubmittedEvent]:
        """The last ``submitted`` event of every (id, fingerprint) of ``ids``, oldest first: the requests
        sent for those ids (what ``pipeline plan`` compares a changed row with)."""
        return [event for page in self.last_submitted_pages(ids) for event in page]

    def last_submitted_pages(self, ids: Sequence[str], page: int = 20_000) -> Iterator[list[SubmittedEvent]]:
        """``last_submitted(ids)`` ``page`` events at a time, in the same order: a plan with a million
        changed rows never holds all their requests at once."""
        seqs: list[int] = []
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            query = f"SELECT last_submit_seq FROM rows WHERE id IN ({', '.join('?' * len(chunk))})"
            seqs += [s for (s,) in self._conn.execute(_q(query), chunk) if s is not None]
        seqs.sort()
        for start in range(0, len(seqs), page):
            wanted = seqs[start : start + page]
            lines = self._log.payloads_in_order(wanted)
            yield [_submitted(lines[s]) for s in wanted]

    def successes_of(self, id: str) -> list[tuple[str, SubmittedEvent]]:
        """``(fingerprint, the submitted event it answered)`` of each success of ``id``, in order: what
        each was generated with (``LedgerState.generated_by_earlier_model`` asks this of a changed row)."""
        found = self._conn.execute(_q(_SUCCESSES), (id,)).fetchall()
        lines = self._log.payloads(seq for _, seq in found)
        return [(FINGERPRINT.unpack(fp), _submitted(lines[seq])) for fp, seq in found]

    def duplicate_payments(self) -> list[SucceededEvent]:
        """``succeeded`` events of rows that had already succeeded: paid twice (should be none)."""
        seqs = [s for (s,) in self._conn.execute("SELECT seq FROM duplicate_payments ORDER BY seq")]
        lines = self._log.payloads(seqs)
        return [_event(lines[s], SucceededEvent) for s in seqs]

    def spent_usd(self) -> Decimal:
        """Exact sum of the provider's costs, duplicate payments included."""
        (usd,) = self._conn.execute(_q("SELECT usd FROM spend WHERE name = ?"), ("total",)).fetchone()
        return Decimal(usd)

    def totals(self) -> dict[str, int]:
        """Every running total: ``rows_<state>``, images, downloaded, download_failures,
        duplicate_successes (one small table: no scan)."""
        values = dict(self._conn.execute("SELECT name, value FROM counters"))
        return {name: int(values.get(name, 0)) for name in COUNTERS}

    def counts(self) -> dict[str, int]:
        """Rows per state over every (id, fingerprint) seen, zeros included (as ``LedgerState.counts``)."""
        totals = self.totals()
        return {state: totals[f"rows_{state}"] for state in ROW_STATES}

    def run_ids(self) -> list[str]:
        """The runs of the job, in order."""
        return [r for (r,) in self._conn.execute("SELECT run_id FROM runs ORDER BY seq")]

    def events_count(self) -> int:
        """How many events the log holds."""
        return self._next_seq - 1

    # -- reading for plan, status, results and report (one connection, no replay) ----------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed state, however a run writes."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def last_seq(self) -> int:
        """The seq of the last committed event, read now (0: none)."""
        return self._log.last_seq()

    def payloads(self, seqs: Iterable[int]) -> dict[int, str]:
        """The JSON line of each event of ``seqs`` (what the row pointers point at), many at once."""
        return self._log.payloads_in_order(seqs)

    def events_since(self, seq: int) -> Iterator[tuple[int, str]]:
        """``(seq, JSON line)`` of every event after ``seq``, in order: what changed since then."""
        return self._log.since(seq)

    def row_state_pages(self, page: int = 100_000) -> Iterator[list[tuple[str, bytes, str]]]:
        """Every ``(id, packed fingerprint, state)`` the state has seen, in pages: one sequential scan for
        bulk readers (``pipeline plan`` over a big manifest); ``keys.FINGERPRINT`` unpacks a fingerprint."""
        cursor = self._conn.execute("SELECT id, fingerprint, state FROM rows")
        while batch := cursor.fetchmany(page):
            yield batch

    def verdicts(
        self, keys: Sequence[tuple[str, str]] | None = None, page: int = 20_000
    ) -> Iterator[list[Verdict]]:
        """Rows with a verdict (succeeded, or failed for good), in pages: every one, or those of ``keys``."""
        if keys is None:
            # In log order: a page's events lie in a few neighbouring blocks, each decompressed once.
            cursor = self._conn.execute(_q(_VERDICTS + " ORDER BY verdict_seq"))
            while batch := cursor.fetchmany(page):
                yield [_verdict(row) for row in batch]
            return
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = {(i, FINGERPRINT.pack(f)) for i, f in keys[start : start + _IN_CHUNK]}
            ids = list({i for i, _ in chunk})
            query = f"{_VERDICTS} AND id IN ({', '.join('?' * len(ids))})"
            rows = [r for r in self._conn.execute(_q(query), ids) if (r[0], bytes(r[1])) in chunk]
            if rows:
                yield [_verdict(row) for row in rows]

    def downloads(self, task_uuids: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(task_uuid, index, seq of its downloaded event)`` of the downloaded images of ``task_uuids``."""
        found: list[tuple[str, int, int]] = []
        for start in range(0, len(task_uuids), _IN_CHUNK):
            chunk = [TASK.pack(t) for t in task_uuids[start : start + _IN_CHUNK]]
            query = f"{_DOWNLOADS} AND task_uuid IN ({', '.join('?' * len(chunk))})"
            found += [(TASK.unpack(t), int(i), int(s)) for t, i, s in self._conn.execute(_q(query), chunk)]
        return found

    def notes(self, prefix: str) -> dict[str, int]:
        """Small integers kept beside the state under ``prefix`` (caches, such as the manifest summary:
        not job state, never events)."""
        found = self._conn.execute(_q("SELECT name, value FROM counters WHERE name LIKE ?"), (prefix + "%",))
        return {name[len(prefix) :]: int(value) for name, value in found if name.startswith(prefix)}

    def set_notes(self, prefix: str, values: dict[str, int]) -> None:
        """Replace the notes under ``prefix`` with ``values``, in one short transaction."""
        conn = self._conn
        try:
            conn.execute(_DIALECT.begin_write)
            try:
                conn.execute(_q("DELETE FROM counters WHERE name LIKE ?"), (prefix + "%",))
                rows = [(prefix + name, value) for name, value in values.items()]
                conn.executemany(_q("INSERT INTO counters (name, value) VALUES (?, ?)"), rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write notes: {exc}") from exc

    # -- export and closing ----------------------------------------------------------------------------

    def export_jsonl(self, out: IO[str]) -> int:
        """Write the whole event log to ``out`` as JSON Lines, in order (the 0.1 ledger's lines); how many.

        Reads through a connection of its own in one read transaction, so a consistent snapshot is
        exported even while this store keeps recording.
        """
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        count = 0
        try:
            reader.execute("BEGIN")
            for line in EventLog(reader, _DIALECT).lines():
                out.write(line + "\n")
                count += 1
            reader.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot export the event log: {exc}") from exc
        finally:
            reader.close()
        return count

    def close(self) -> None:
        """Stop the group commit (after its last fsync) and close the database. Idempotent."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Reader:
    """What a batch of changes reads from the committed tables (``changes.Reader``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def row(self, id: str, fingerprint: str) -> StoredRow | None:
        found = self._conn.execute(_q(_ROW), (id, FINGERPRINT.pack(fingerprint))).fetchone()
        if found is None:
            return None
        state, attempts, images, seq, task, fmt, last_submit, verdict, verdict_submit = found
        submit = OpenSubmit(seq, task, fmt) if seq is not None else None
        facts = RowFacts(state, attempts, images, submit)
        return StoredRow(facts, last_submit, verdict, verdict_submit, before=state)

    def attempt(self, fingerprint: str) -> int:
        row = self._conn.execute(_q(_ATTEMPT), (FINGERPRINT.pack(fingerprint),)).fetchone()
        return 0 if row is None else int(row[0])

    def image(self, task_uuid: str, index: int) -> ImageRow | None:
        found = self._conn.execute(_q(_IMAGE), (TASK.pack(task_uuid), index)).fetchone()
        return None if found is None else ImageRow(*found)


_ROW = """SELECT state, attempts, images, submit_seq, submit_task, submit_format, last_submit_seq,
    verdict_seq, verdict_submit_seq FROM rows WHERE id = ? AND fingerprint = ?"""
_IMAGE = "SELECT success_seq, ext, download_seq FROM images WHERE task_uuid = ? AND idx = ?"
# The partial index's own predicate, spelled as in the index (a parameter may keep a planner from using it).
_IN_DOUBT = f"SELECT submit_seq FROM rows WHERE state = '{IN_DOUBT}' ORDER BY submit_seq"
_STATE = "SELECT state FROM rows WHERE id = ? AND fingerprint = ?"
_ATTEMPT = "SELECT attempt FROM attempts WHERE fingerprint = ?"
_UPLOAD = "SELECT image_uuid FROM uploads WHERE sha256 = ?"
_SUCCESSES = f"""SELECT fingerprint, verdict_submit_seq FROM rows WHERE id = ? AND state = '{SUCCEEDED}'
    AND verdict_submit_seq IS NOT NULL ORDER BY verdict_seq"""
_PENDING = "SELECT success_seq, ext FROM images WHERE task_uuid = ? AND idx = ? AND download_seq IS NULL"
_UNDOWNLOADED = """SELECT task_uuid, idx, success_seq, ext FROM images WHERE download_seq IS NULL
    ORDER BY success_seq, idx"""
# A manifest batch's rows whose (id, fingerprint) has not succeeded: one primary-key lookup per row.
_UNFINISHED = f"""SELECT j.pos, r.state,
    r.state IS NOT NULL OR EXISTS (SELECT 1 FROM rows AS h WHERE h.id = j.item)
    FROM {_DIALECT.json_items} AS j LEFT JOIN rows AS r
    ON r.id = j.item AND r.fingerprint = substr(?, j.pos * {FINGERPRINT.size} + 1, {FINGERPRINT.size})
    WHERE r.state IS NULL OR r.state <> '{SUCCEEDED}'"""
_SUCCEEDED_OF = f"""SELECT r.id, r.fingerprint FROM {_DIALECT.json_items} AS j
    JOIN rows AS r ON r.id = j.item WHERE r.state = '{SUCCEEDED}'"""
_VERDICTS = f"""SELECT id, fingerprint, state, attempts, verdict_seq,
    COALESCE(verdict_submit_seq, last_submit_seq) FROM rows
    WHERE state IN ('{SUCCEEDED}', '{FAILED}') AND verdict_seq IS NOT NULL"""
_DOWNLOADS = "SELECT task_uuid, idx, download_seq FROM images WHERE download_seq IS NOT NULL"


def _json_list(texts: Sequence[str]) -> str:
    """The parameter of ``json_items``: the texts as one JSON array."""
    return json.dumps(list(texts), ensure_ascii=False)


def _verdict(row: tuple[str, bytes, str, int, int, int | None]) -> Verdict:
    id, fp, state, attempts, verdict, submit = row
    return Verdict(id, FINGERPRINT.unpack(fp), state, int(attempts), int(verdict), submit)


def _event(line: str, cls: type[E]) -> E:
    event = event_from_dict(json.loads(line))
    if not isinstance(event, cls):
        raise StoreError(f"a {cls.kind!r} event was expected, not {line[:80]!r}")
    return event


def _submitted(line: str) -> SubmittedEvent:
    return _event(line, SubmittedEvent)


def _pending(line: str, task_uuid: str, index: int, ext: str) -> PendingDownload:
    event = _event(line, SucceededEvent)
    image = next(im for im in reversed(event.images) if im.index == index)  # the fold keeps the last one
    return PendingDownload(
        event.id, event.fingerprint, task_uuid, index, image.image_uuid, image.image_url, ext
    )
