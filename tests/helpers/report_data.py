"""Synthetic results tables, ledgers and rejects in the documented schemas, for the report tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image

from pipeline.output.results.write import RESULTS_COLUMNS

UTC = dt.UTC
# The engine's own schema, so report tests break if the results table changes under them.
COLUMNS: dict[str, Any] = RESULTS_COLUMNS


def at(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def result_row(
    id: str,
    *,
    status: str = "succeeded",
    index: int = 0,
    cost: float | None = 0.011,
    estimate: float | None = 0.011,
    when: dt.datetime | None = None,
    run_id: str = "run1",
    job: str = "shop",
    quality: str = "medium",
    width: int = 1024,
    height: int = 1024,
    prompt: str | None = None,
    local_path: str | None = None,
    error: tuple[str, str] | None = None,
    **passthrough: Any,
) -> dict[str, Any]:
    """One results row with sensible defaults; extra keyword arguments become passthrough columns."""
    when = when or at(20)
    failed = status != "succeeded"
    return {
        "id": id,
        "fingerprint": f"fp-{id}",
        "result_index": None if failed else index,
        "status": status,
        "task_uuid": f"task-{id}-{'f' if failed else 's'}",
        "image_uuid": None if failed else f"img-{id}-{index}",
        "image_url": None if failed else f"http://127.0.0.1/img/{id}-{index}.jpg",
        "cost_usd": None if failed else cost,
        "cost_source": None if failed else "provider",
        "estimate_usd": estimate,
        "model": "openai:1@2",
        "width": width,
        "height": height,
        "quality": quality,
        "background": "opaque",
        "output_format": "JPG",
        "prompt": prompt or f"a product photo of {id}",
        "local_path": local_path,
        "sha256": None,
        "bytes": None,
        "attempts": 1,
        "error_code": error[0] if error else None,
        "error_message": error[1] if error else None,
        "submitted_at": when - dt.timedelta(seconds=5),
        "completed_at": when,
        "latency_s": 5.0,
        "run_id": run_id,
        "job": job,
        **passthrough,
    }


def write_results(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """``out_dir/results.parquet`` from ``rows`` (documented column order, passthrough last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = [k for k in rows[0] if k not in COLUMNS] if rows else []
    frame = pl.DataFrame(rows, schema={**COLUMNS, **dict.fromkeys(extra, pl.String)}, orient="row")
    path = out_dir / "results.parquet"
    frame.write_parquet(path)
    return path


def write_rejects(out_dir: Path, rejects: list[tuple[int, str | None, str]]) -> Path:
    path = out_dir / "rejects.parquet"
    pl.DataFrame(
        rejects, schema={"row_number": pl.Int64, "id": pl.String, "reason": pl.String}, orient="row"
    ).write_parquet(path)
    return path


def iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def succeeded_event(
    id: str, task_uuid: str, costs: list[float | None], when: dt.datetime, run_id: str = "run1"
) -> dict[str, Any]:
    images = [
        {"index": i, "image_uuid": f"img-{task_uuid}-{i}", "image_url": "http://x/y.jpg", "cost_usd": c}
        for i, c in enumerate(costs)
    ]
    known = [c for c in costs if c is not None]
    total = sum(known) if known else None
    return {
        "event": "succeeded",
        "id": id,
        "fingerprint": f"fp-{id}",
        "task_uuid": task_uuid,
        "run_id": run_id,
        "images": images,
        "cost_usd": total,
        "at": iso(when),
    }


def submitted_event(id: str, task_uuid: str, when: dt.datetime, **request: Any) -> dict[str, Any]:
    req = {
        "model": "openai:1@2",
        "prompt": f"a product photo of {id}",
        "width": 1024,
        "height": 1024,
        "quality": "medium",
        "background": "opaque",
        "output_format": "JPG",
        "number_results": 1,
        "reference_images": [],
        **request,
    }
    return {
        "event": "submitted",
        "id": id,
        "fingerprint": f"fp-{id}",
        "task_uuid": task_uuid,
        "attempt": 1,
        "run_id": "run1",
        "estimate_usd": 0.011,
        "request": req,
        "passthrough": {},
        "at": iso(when),
    }


def failed_event(id: str, task_uuid: str, when: dt.datetime, retryable: bool = False) -> dict[str, Any]:
    return {
        "event": "failed",
        "id": id,
        "fingerprint": f"fp-{id}",
        "task_uuid": task_uuid,
        "run_id": "run1",
        "code": "invalidPrompt",
        "message": "refused",
        "retryable": retryable,
        "at": iso(when),
    }


def write_ledger(out_dir: Path, events: list[dict[str, Any]], *, torn: str = "") -> Path:
    """``out_dir/ledger.jsonl`` with a job header, ``events``, and optionally a torn last line."""
    head = [{"event": "job", "version": 1, "namespace": "ns", "job": "shop", "at": iso(at(19))}]
    path = out_dir / "ledger.jsonl"
    text = "".join(json.dumps(e) + "\n" for e in head + events)
    path.write_text(text + torn)
    return path


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (256, 256)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def shop_job(out_dir: Path, *, ledger: bool = True) -> Path:
    """A small job: 3 images kept, 1 failed row, 1 duplicate charge in the ledger, 1 reject.

    spend 0.011*2 + 0.015 (kept) + 0.015 (duplicate) = 0.052; wasted 0.015; estimate 0.011*2 + 0.011.
    """
    rows = [
        result_row("a", index=0, cost=0.011, when=at(20, 9), category="shoes"),
        result_row("a", index=1, cost=0.011, when=at(20, 9), category="shoes"),
        result_row(
            "b", cost=0.015, estimate=0.011, width=1536, when=at(21, 10), run_id="run2", category="hats"
        ),
        result_row(
            "c",
            status="failed",
            when=at(21, 11),
            run_id="run2",
            category="hats",
            error=("invalidPrompt", "refused by the content filter"),
        ),
    ]
    results = write_results(out_dir, rows)
    write_rejects(out_dir, [(4, "d", "unknown quality 'ultra'")])
    if ledger:
        write_ledger(
            out_dir,
            [
                succeeded_event("a", "task-a-s", [0.011, 0.011], at(20, 9)),
                succeeded_event("b", "task-b-s", [0.015], at(21, 10), "run2"),
                succeeded_event("b", "task-b-dup", [0.015], at(21, 10, 5), "run2"),
                failed_event("c", "task-c-f", at(21, 11)),
            ],
        )
    return results
