"""The state database's tables, their version, and the upgrades between versions.

    version = ensure_schema(conn, SQLITE)   # creates a new database, upgrades an older one

The version lives in ``PRAGMA user_version`` (read without touching a table) and in ``job.schema_version``
(the portable copy a PostgreSQL store uses). A database from a newer version is refused, never written.

What each table holds (``seq`` is an event's position in the append-only log; fingerprints and task
UUIDs in keys are packed to their raw bytes by ``keys``):

- ``job``: the job's name and the namespace of its task UUIDs (one row, from the first ``job`` event);
- ``events`` / ``event_blocks``: the log itself, each event as the exact JSON line the 0.1 ledger held;
  recent events one row each, older ones compressed in blocks of consecutive seqs (see ``eventlog``);
- ``rows``: one per (id, fingerprint) ever sent: state, attempts, images, the unanswered submit (seq,
  taskUUID, output format: only until answered), and pointers to the events a results line or a plan
  needs: the last submitted, the verdict (first success, else last failure) and the submit it answered;
- ``attempts``: fingerprint -> highest attempt submitted (the next taskUUID is attempt + 1);
- ``uploads``: sha256 of a local reference -> its Runware image UUID;
- ``images``: one per image of a row's first success, with the event that downloaded it (NULL: not yet);
- ``runs``: the runs of the job, in order;
- ``duplicate_payments``: the ``succeeded`` events of rows that had already succeeded (paid twice);
- ``counters`` / ``spend``: running totals kept in the same transaction as the events (rows per state,
  images, downloads, duplicate payments; spend as an exact decimal string, never a float).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

from pipeline.errors import SchemaError
from pipeline.state.dialect import Dialect
from pipeline.state.rule import ROW_STATES

__all__ = ["COUNTERS", "MIGRATIONS", "SCHEMA_VERSION", "SchemaError", "ensure_schema"]

SCHEMA_VERSION: Final = 1

COUNTERS: Final = (
    *(f"rows_{state}" for state in ROW_STATES),
    "images",
    "downloaded",
    "download_failures",
    "duplicate_successes",
)

_TABLES: Final = (
    """CREATE TABLE job (
        singleton INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        namespace TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE TABLE events (seq {seq} PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL)",
    """CREATE TABLE event_blocks (
        first_seq BIGINT PRIMARY KEY,
        last_seq BIGINT NOT NULL,
        data {blob} NOT NULL
    )""",
    """CREATE TABLE rows (
        id TEXT NOT NULL,
        fingerprint {blob} NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        images INTEGER NOT NULL,
        submit_seq BIGINT,
        submit_task TEXT,
        submit_format TEXT,
        last_submit_seq BIGINT,
        verdict_seq BIGINT,
        verdict_submit_seq BIGINT,
        PRIMARY KEY (id, fingerprint)
    ){clustered}""",
    "CREATE INDEX rows_in_doubt ON rows (submit_seq) WHERE state = 'in_doubt'",
    "CREATE TABLE attempts (fingerprint {blob} PRIMARY KEY, attempt INTEGER NOT NULL){clustered}",
    "CREATE TABLE uploads (sha256 TEXT PRIMARY KEY, image_uuid TEXT NOT NULL){clustered}",
    """CREATE TABLE images (
        task_uuid {blob} NOT NULL,
        idx INTEGER NOT NULL,
        success_seq BIGINT NOT NULL,
        ext TEXT NOT NULL,
        download_seq BIGINT,
        PRIMARY KEY (task_uuid, idx)
    ){clustered}""",
    "CREATE INDEX images_undownloaded ON images (success_seq) WHERE download_seq IS NULL",
    "CREATE TABLE runs (seq BIGINT PRIMARY KEY, run_id TEXT NOT NULL)",
    "CREATE TABLE duplicate_payments (seq BIGINT PRIMARY KEY)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL){clustered}",
    "CREATE TABLE spend (name TEXT PRIMARY KEY, usd TEXT NOT NULL){clustered}",
)

Migration = Callable[[sqlite3.Connection, Dialect], None]

# MIGRATIONS[n] upgrades a version-n database to n + 1, inside the upgrade's one transaction.
MIGRATIONS: dict[int, Migration] = {}


def ensure_schema(conn: sqlite3.Connection, dialect: Dialect, *, name: str = "state database") -> int:
    """Create the tables of an empty database or upgrade an older one; the version it had before."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found == SCHEMA_VERSION:
        return found
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"{name}: schema version {found} was written by a newer image-pipeline "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade image-pipeline"
        )
    conn.execute(dialect.begin_write)
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
        if found == 0:
            _create(conn, dialect)
        else:
            _upgrade(conn, dialect, found, name)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _create(conn: sqlite3.Connection, dialect: Dialect) -> None:
    for statement in _TABLES:
        conn.execute(dialect.ddl(statement))
    conn.executemany(
        dialect.sql("INSERT INTO counters (name, value) VALUES (?, 0)"), [(c,) for c in COUNTERS]
    )
    conn.execute(dialect.sql("INSERT INTO spend (name, usd) VALUES (?, ?)"), ("total", "0"))


def _upgrade(conn: sqlite3.Connection, dialect: Dialect, found: int, name: str) -> None:
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise SchemaError(f"{name}: no upgrade from schema version {version} to {version + 1}")
        step(conn, dialect)
    conn.execute(dialect.sql("UPDATE job SET schema_version = ?"), (SCHEMA_VERSION,))
