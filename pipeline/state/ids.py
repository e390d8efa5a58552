"""The job's identifiers: the deterministic taskUUID of each attempt, and run ids.

    task_uuid_for(store.namespace, row.fingerprint, store.next_attempt(row.fingerprint))
    new_run_id()                                   # "9f1c..." (32 hex digits)

A taskUUID is the UUIDv5 of the job's namespace (random, stored once with the state) and
``"{fingerprint}:{attempt}"``: the same attempt of the same request always has the same taskUUID, so a
task in doubt after a crash is asked about, or resubmitted, under the UUID it was sent with.
"""

from __future__ import annotations

import uuid

__all__ = ["new_run_id", "task_uuid_for"]


def task_uuid_for(namespace: str, fingerprint: str, attempt: int) -> str:
    """Deterministic taskUUID of an attempt: UUIDv5 of the job namespace and ``"{fingerprint}:{attempt}"``."""
    return str(uuid.uuid5(uuid.UUID(namespace), f"{fingerprint}:{attempt}"))


def new_run_id() -> str:
    """A fresh run id (uuid4 hex)."""
    return uuid.uuid4().hex
