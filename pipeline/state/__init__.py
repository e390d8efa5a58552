"""The job's state in an embedded database (SQLite, WAL), behind a store whose SQL stays portable.

    from pipeline.state import Store, open_job_state
    with open_job_state(spec.out_dir, job=spec.name) as store:   # imports a 0.1 ledger.jsonl once
        store.record(event)
        store.row_state(row.id, row.fingerprint)

Modules: ``rule`` (the row-state, attempt and cost rules, in one place), ``ids`` (taskUUIDs and run ids),
``schema`` (tables and versions), ``dialect`` (SQLite / PostgreSQL differences), ``eventlog`` (the
append-only log), ``changes`` (applying events to the tables), ``durability`` (fsync policies), ``store``,
``ledger_file`` (reading a 0.1 ``ledger.jsonl``), ``migrate`` (its import), ``export`` (the audit export).
"""

from pipeline.state.durability import Durability
from pipeline.state.export import export_events
from pipeline.state.ledger_file import LEDGER_NAME, LedgerError
from pipeline.state.migrate import ImportSummary, import_ledger, open_job_state
from pipeline.state.schema import SCHEMA_VERSION, SchemaError
from pipeline.state.store import STATE_NAME, Store, StoreError

__all__ = [
    "LEDGER_NAME",
    "SCHEMA_VERSION",
    "STATE_NAME",
    "Durability",
    "ImportSummary",
    "LedgerError",
    "SchemaError",
    "Store",
    "StoreError",
    "export_events",
    "import_ledger",
    "open_job_state",
]
