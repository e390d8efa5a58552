"""The few places where SQLite and PostgreSQL differ, so the store's SQL is written once.

    SQLITE.sql("SELECT state FROM rows WHERE id = ?")       # as written
    POSTGRES.sql("SELECT state FROM rows WHERE id = ?")     # "... WHERE id = %s"
    SQLITE.ddl("CREATE TABLE t (data {blob}){clustered}")   # "... (data BLOB) WITHOUT ROWID"
    f"SELECT pos, item FROM {SQLITE.json_items}"             # one row per item of a JSON array parameter

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
    # A table of (pos, item): each text of the JSON array given as its one parameter, pos from 0. One
    # parameter for a whole batch of keys, where "IN (?, ?, ...)" needs a statement per few hundred.
    json_items: str

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
    json_items="(SELECT key AS pos, value AS item FROM json_each(?))",
)
POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    blob="BYTEA",
    seq="BIGINT",
    clustered="",
    begin_write="BEGIN",
    for_update=" FOR UPDATE",
    json_items=(
        "(SELECT ord - 1 AS pos, item FROM json_array_elements_text(?::json) WITH ORDINALITY AS t(item, ord))"
    ),
)
