"""The events a job's state holds, read as its audit export gives them."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path

from pipeline.state import STATE_NAME, Store
from pipeline.state.events import Event, event_from_dict


def state_events(out_dir: Path) -> list[Event]:
    """Every event committed to the job's state so far, in order (its audit export); none before the
    state exists (safe while a run in another process writes it)."""
    path = out_dir / STATE_NAME
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=10)) as conn:  # not Store.open: it would create tables
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            return []  # a run is creating it right now
    with Store.open(path) as store:
        out = io.StringIO()
        store.export_jsonl(out)
    return [e for line in out.getvalue().splitlines() if (e := event_from_dict(json.loads(line)))]
