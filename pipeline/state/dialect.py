"""The few places where SQLite and PostgreSQL differ, so the store's SQL is written once.

    SQLITE.sql("SELECT state FROM rows WHERE id = ?")       # as written
    POSTGRES.sql("SELECT state FROM rows WHERE id = ?")     # "... WHERE id = %s"
    SQLITE.ddl("CREATE TABLE t (data {blob}){clustered}")   # "... (data BLOB) WITHOUT ROWID"

Statements use ``?`` placeholders and never a literal ``?``. Everything else is plain SQL both accept:
TEXT / INTEGER / BIGINT columns, composite primary keys, partial indexes, ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POSTGRES", "SQLITE", "Dialect"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells placeholders, binary data, keys and a write transaction."""

    name: str
    placeholder: str
    blob: str  # binary column type
    seq: str  # 64-bit key column type (SQLite's INTEGER PRIMARY KEY is the row id itself: no extra index)
    clustered: str  # suffix of a table stored in its primary key's order
    begin_write: str  # start a transaction that holds the write lock from its first statement
    for_update: str  # suffix of a SELECT whose row the transaction then updates

    def sql(self, statement: str) -> str:
        """``statement`` with this database's placeholders."""
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def ddl(self, statement: str) -> str:
        """A ``CREATE`` statement with ``{blob}``, ``{seq}`` and ``{clustered}`` filled in."""
        return statement.format(blob=self.blob, seq=self.seq, clustered=self.clustered)


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    blob="BLOB",
    seq="INTEGER",
    clustered=" WITHOUT ROWID",
    begin_write="BEGIN IMMEDIATE",
    for_update="",  # BEGIN IMMEDIATE already holds the database's one write lock
)
POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    blob="BYTEA",
    seq="BIGINT",
    clustered="",
    begin_write="BEGIN",
    for_update=" FOR UPDATE",
)
