"""What a batch of events changes in the state tables: the rule of ``pipeline.state.rule`` applied to the
rows the batch touches, read once, written once at the end of the batch's transaction.

    changes = Changes(reader, job_known=True)   # reader: loads what the batch has not seen yet
    changes.apply(seq, event)                   # for each event, in order
    changes.write(conn, dialect)                # the upserts and counter deltas, same transaction
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from pipeline.state.dialect import Dialect
from pipeline.state.events import (
    DownloadedEvent,
    DownloadFailedEvent,
    Event,
    FailedEvent,
    JobEvent,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
)
from pipeline.state.keys import FINGERPRINT, TASK
from pipeline.state.rule import (
    SUCCEEDED,
    RowFacts,
    event_cost,
    highest_attempt,
    image_extension,
    on_failed,
    on_submitted,
    on_succeeded,
)
from pipeline.state.schema import SCHEMA_VERSION

__all__ = ["Changes", "ImageRow", "OpenSubmit", "Reader", "StoredRow"]


class OpenSubmit(NamedTuple):
    """The store's handle on an unanswered ``submitted``: its seq and what a success needs of it."""

    seq: int
    task_uuid: str
    output_format: str | None


@dataclass(slots=True)
class StoredRow:
    """A ``rows`` row: the rule's facts plus the pointers a results line is built from."""

    facts: RowFacts[OpenSubmit]
    last_submit_seq: int | None = None  # the row's last submitted event (the request sent last)
    verdict_seq: int | None = None  # first success, else the last failure
    verdict_submit_seq: int | None = None  # the submit open when the verdict came (check its task_uuid)
    before: str | None = None  # state when the batch started (None: a new row)


@dataclass(slots=True)
class ImageRow:
    """An ``images`` row: an image of a row's first success, and the event that downloaded it."""

    success_seq: int
    ext: str
    download_seq: int | None = None


class Reader(Protocol):
    """Reads what a batch needs from the committed state."""

    def row(self, id: str, fingerprint: str) -> StoredRow | None: ...
    def attempt(self, fingerprint: str) -> int: ...
    def image(self, task_uuid: str, index: int) -> ImageRow | None: ...


class Changes:
    """The effect of consecutive events on the derived tables, kept in memory until ``write``."""

    def __init__(self, reader: Reader, *, job_known: bool) -> None:
        self._reader = reader
        self.job: JobEvent | None = None
        self.job_known = job_known
        self.rows: dict[tuple[str, str], StoredRow] = {}
        self.attempts: dict[str, int] = {}
        self.uploads: dict[str, str] = {}
        self.images: dict[tuple[str, int], ImageRow] = {}
        self.runs: list[tuple[int, str]] = []
        self.duplicates: list[tuple[int]] = []
        self.counters: Counter[str] = Counter()
        self.spent = Decimal(0)

    def apply(self, seq: int, event: Event | None) -> None:
        """Fold one event (None: a kind this version does not know, kept in the log only)."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, seq, event)

    def _row(self, id: str, fingerprint: str) -> StoredRow:
        key = (id, fingerprint)
        row = self.rows.get(key)
        if row is None:
            row = self._reader.row(id, fingerprint) or StoredRow(RowFacts())
            self.rows[key] = row
        return row

    def _image(self, task_uuid: str, index: int) -> ImageRow | None:
        key = (task_uuid, index)
        if key not in self.images:
            found = self._reader.image(task_uuid, index)
            if found is None:
                return None
            self.images[key] = found
        return self.images[key]

    def on_job(self, seq: int, ev: JobEvent) -> None:
        if not self.job_known and self.job is None:
            self.job = ev

    def on_run(self, seq: int, ev: RunEvent) -> None:
        self.runs.append((seq, ev.run_id))

    def on_uploaded(self, seq: int, ev: UploadedEvent) -> None:
        self.uploads[ev.sha256] = ev.image_uuid

    def on_submitted(self, seq: int, ev: SubmittedEvent) -> None:
        row = self._row(ev.id, ev.fingerprint)
        on_submitted(row.facts, OpenSubmit(seq, ev.task_uuid, _text(ev.request.get("output_format"))))
        row.last_submit_seq = seq
        fp = ev.fingerprint
        current = self.attempts[fp] if fp in self.attempts else self._reader.attempt(fp)
        if (highest := highest_attempt(current, ev.attempt)) != current:
            self.attempts[fp] = highest

    def on_succeeded(self, seq: int, ev: SucceededEvent) -> None:
        row = self._row(ev.id, ev.fingerprint)
        self.spent += event_cost(ev)
        answer = on_succeeded(row.facts, len(ev.images))
        submit, first = answer
        if not first:
            self.counters["duplicate_successes"] += 1
            self.duplicates.append((seq,))
            return
        row.verdict_seq, row.verdict_submit_seq = seq, submit.seq if submit else None
        answered = submit if submit is not None and submit.task_uuid == ev.task_uuid else None
        self.counters["images"] += len(ev.images)
        fmt = answered.output_format if answered else None
        for image in ev.images:
            self.images[(ev.task_uuid, image.index)] = ImageRow(seq, image_extension(fmt, image.image_url))

    def on_failed(self, seq: int, ev: FailedEvent) -> None:
        row = self._row(ev.id, ev.fingerprint)
        submit = on_failed(row.facts, ev.retryable)
        if row.facts.state != SUCCEEDED:
            row.verdict_seq, row.verdict_submit_seq = seq, submit.seq if submit else None

    def on_downloaded(self, seq: int, ev: DownloadedEvent) -> None:
        image = self._image(ev.task_uuid, ev.index)
        if image is None:
            return  # not an image of a first success: nothing waits for it
        if image.download_seq is None:
            self.counters["downloaded"] += 1
        image.download_seq = seq  # the latest download is the file on disk

    def on_download_failed(self, seq: int, ev: DownloadFailedEvent) -> None:
        self.counters["download_failures"] += 1

    def write(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        """Write every change; the caller's transaction makes them atomic with the events."""
        sql = dialect.sql
        if self.job is not None:
            conn.execute(
                sql(
                    "INSERT INTO job (singleton, name, namespace, schema_version, created_at) "
                    "VALUES (1, ?, ?, ?, ?)"
                ),
                (self.job.job, self.job.namespace, SCHEMA_VERSION, self.job.at),
            )
        writes = (
            (_UPSERT_ROW, [_row_values(key, row) for key, row in self.rows.items()]),
            (_UPSERT_ATTEMPT, [(FINGERPRINT.pack(fp), n) for fp, n in self.attempts.items()]),
            (_UPSERT_UPLOAD, list(self.uploads.items())),
            (
                _UPSERT_IMAGE,
                [
                    (TASK.pack(t), i, im.success_seq, im.ext, im.download_seq)
                    for (t, i), im in self.images.items()
                ],
            ),
            ("INSERT INTO runs (seq, run_id) VALUES (?, ?)", self.runs),
            ("INSERT INTO duplicate_payments (seq) VALUES (?)", self.duplicates),
            ("UPDATE counters SET value = value + ? WHERE name = ?", self._counter_deltas()),
        )
        for statement, values in writes:
            if values:
                conn.executemany(sql(statement), values)
        if self.spent:
            select = sql("SELECT usd FROM spend WHERE name = ?") + dialect.for_update
            (total,) = conn.execute(select, ("total",)).fetchone()
            conn.execute(
                sql("UPDATE spend SET usd = ? WHERE name = ?"), (str(Decimal(total) + self.spent), "total")
            )

    def _counter_deltas(self) -> list[tuple[int, str]]:
        counters = self.counters.copy()
        for row in self.rows.values():
            if row.before != row.facts.state:
                if row.before is not None:
                    counters[f"rows_{row.before}"] -= 1
                counters[f"rows_{row.facts.state}"] += 1
        return [(n, name) for name, n in counters.items() if n]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _row_values(key: tuple[str, str], row: StoredRow) -> tuple[object, ...]:
    facts, submit = row.facts, row.facts.submit
    return (
        key[0],
        FINGERPRINT.pack(key[1]),
        facts.state,
        facts.attempts,
        facts.images,
        submit.seq if submit else None,
        submit.task_uuid if submit else None,
        submit.output_format if submit else None,
        row.last_submit_seq,
        row.verdict_seq,
        row.verdict_submit_seq,
    )


_UPSERT_ROW = """INSERT INTO rows (id, fingerprint, state, attempts, images, submit_seq, submit_task,
    submit_format, last_submit_seq, verdict_seq, verdict_submit_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id, fingerprint) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
    images = excluded.images, submit_seq = excluded.submit_seq, submit_task = excluded.submit_task,
    submit_format = excluded.submit_format, last_submit_seq = excluded.last_submit_seq,
    verdict_seq = excluded.verdict_seq,
    verdict_submit_seq = excluded.verdict_submit_seq"""
_UPSERT_ATTEMPT = """INSERT INTO attempts (fingerprint, attempt) VALUES (?, ?)
    ON CONFLICT (fingerprint) DO UPDATE SET attempt = excluded.attempt"""
_UPSERT_UPLOAD = """INSERT INTO uploads (sha256, image_uuid) VALUES (?, ?)
    ON CONFLICT (sha256) DO UPDATE SET image_uuid = excluded.image_uuid"""
_UPSERT_IMAGE = """INSERT INTO images (task_uuid, idx, success_seq, ext, download_seq) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (task_uuid, idx) DO UPDATE SET success_seq = excluded.success_seq, ext = excluded.ext,
    download_seq = excluded.download_seq"""

_HANDLERS: dict[type, Callable[[Changes, int, Any], None]] = {
    JobEvent: Changes.on_job,
    RunEvent: Changes.on_run,
    UploadedEvent: Changes.on_uploaded,
    SubmittedEvent: Changes.on_submitted,
    SucceededEvent: Changes.on_succeeded,
    FailedEvent: Changes.on_failed,
    DownloadedEvent: Changes.on_downloaded,
    DownloadFailedEvent: Changes.on_download_failed,
}
