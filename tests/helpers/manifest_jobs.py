"""Helpers for the manifest and plan tests: write a job spec, its manifest and real images to a folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image

from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.manifest.reader import ManifestBatch, read_manifest


def write_job(
    folder: Path,
    manifest: str | bytes | pl.DataFrame | list[dict[str, Any]],
    *,
    name: str = "manifest.csv",
    spec: str = "",
    sets: str | None = None,
) -> Path:
    """A job spec ``job.toml`` in ``folder`` reading ``name`` (CSV text/bytes, a frame, or JSONL rows)."""
    path = folder / name
    if isinstance(manifest, pl.DataFrame):
        manifest.write_parquet(path) if name.endswith(".parquet") else manifest.write_csv(path)
    elif isinstance(manifest, list):
        path.write_text("".join(json.dumps(row) + "\n" for row in manifest))
    elif isinstance(manifest, bytes):
        path.write_bytes(manifest)
    else:
        path.write_text(manifest)
    head = f'name = "t"\nmanifest = "{name}"\noutput_dir = "out"\n'
    if sets is not None:
        (folder / "sets.csv").write_text(sets)
        head += 'reference_sets = "sets.csv"\n'
    job = folder / "job.toml"
    job.write_text(head + spec)
    return job


def load(folder: Path, *args: Any, **kwargs: Any) -> JobSpec:
    return load_job_spec(write_job(folder, *args, **kwargs))


def read_all(spec: JobSpec, batch_size: int = 10_000) -> ManifestBatch:
    """Every batch of ``spec``'s manifest folded into one."""
    rows, rejects = [], []
    for batch in read_manifest(spec, batch_size=batch_size):
        rows += batch.rows
        rejects += batch.rejects
    return ManifestBatch(rows, rejects)


def image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> Path:
    """A real PNG or JPEG (by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def write_ledger(out_dir: Path, events: Iterable[dict[str, Any]]) -> Path:
    """``out_dir/ledger.jsonl`` with a job line, a run line and ``events`` (per the ledger schema)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    at = "2026-11-23T10:00:00+00:00"
    head = [
        {
            "event": "job",
            "version": 1,
            "namespace": "6f1c1a52-0000-4000-8000-000000000000",
            "job": "t",
            "at": at,
        },
        {"event": "run", "run_id": "r1", "at": at},
    ]
    path = out_dir / "ledger.jsonl"
    path.write_text("".join(json.dumps({"at": at, **e}) + "\n" for e in [*head, *events]))
    return path


def submitted(row_id: str, fingerprint: str, attempt: int = 1) -> dict[str, Any]:
    return {
        "event": "submitted",
        "id": row_id,
        "fingerprint": fingerprint,
        "task_uuid": f"{fingerprint[:8]}-0000-5000-8000-{attempt:012d}",
        "attempt": attempt,
        "run_id": "r1",
        "estimate_usd": 0.011,
        "request": {"model": "openai:1@2", "prompt": "p"},
        "passthrough": {},
    }


def succeeded(row_id: str, fingerprint: str, attempt: int = 1) -> dict[str, Any]:
    task = f"{fingerprint[:8]}-0000-5000-8000-{attempt:012d}"
    image = {"index": 0, "image_uuid": "u", "image_url": "http://x/i.jpg", "cost_usd": 0.011}
    return {
        "event": "succeeded",
        "id": row_id,
        "fingerprint": fingerprint,
        "task_uuid": task,
        "run_id": "r1",
        "images": [image],
        "cost_usd": 0.011,
    }


def failed(row_id: str, fingerprint: str, retryable: bool, attempt: int = 1) -> dict[str, Any]:
    return {
        "event": "failed",
        "id": row_id,
        "fingerprint": fingerprint,
        "task_uuid": f"{fingerprint[:8]}-0000-5000-8000-{attempt:012d}",
        "run_id": "r1",
        "code": "invalidPrompt",
        "message": "refused",
        "retryable": retryable,
    }
