"""The job's state in an embedded database (SQLite, WAL), behind a store whose SQL stays portable.

    from pipeline.state import Store, open_job_state
    with open_job_state(spec.out_dir, job=spec.name) as store:   # imports a 0.1 ledger.jsonl once
        store.record(event)
        store.row_state(row.id, row.fingerprint)

Modules: ``rule`` (the row-state, attempt and cost rules, shared with the ledger fold), ``schema`` (tables
and versions), ``dialect`` (SQLite / PostgreSQL differences), ``eventlog`` (the append-only log),
``changes`` (applying events to the tables), ``durability`` (fsync policies), ``store``, ``migrate``
(0.1 ledger import), ``export`` (the audit export).
"""

from pipeline.state.durability import Durability
from pipeline.state.export import export_events
from pipeline.state.migrate import ImportSummary, import_ledger, open_job_state
from pipeline.state.schema import SCHEMA_VERSION, SchemaError
from pipeline.state.store import STATE_NAME, Store, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "STATE_NAME",
    "Durability",
    "ImportSummary",
    "SchemaError",
    "Store",
    "StoreError",
    "export_events",
    "import_ledger",
    "open_job_state",
]
