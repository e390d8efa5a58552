"""Data for ``state_million.py``: a catalog-shaped manifest, and a job state in which every row is generated.

    python benchmarks/state_data.py manifest DIR --rows 1000000   # manifest-orig.parquet, manifest.parquet
    python benchmarks/state_data.py state JOB.toml --format db      # JOB's output_dir/state.db
    python benchmarks/state_data.py state JOB.toml --format jsonl   # JOB's output_dir/ledger.jsonl (0.1)

``manifest`` writes the rows twice: as they were generated (``manifest-orig.parquet``) and with 1% of the
prompts edited (``manifest.parquet``, what the nightly run reads). ``state`` reads a job spec's manifest with
the pipeline's own ``read_manifest`` (so every fingerprint is the one a command computes) and records, per
row, the events a real run would have written: ``submitted`` and ``succeeded`` (one image, its cost), a
``downloaded`` for half the rows, a retryable ``failed`` then a second attempt for 0.5%. ``db`` records
them with ``Store.record_many`` in big batches; ``jsonl`` writes them as 0.1's ledger lines (its job header,
then one ``event_to_json`` line per event, as 0.1's ``LedgerWriter`` wrote them). Only APIs that 0.1 shares
with today's code are used (the taskUUID function is found where each keeps it), so the same file
generates the 0.1 state when run by the 0.1 checkout's Python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHANGED_EVERY = 100  # 1% of the prompts change between the generated state and tonight's manifest
CHANGED_AT = 50  # the rows n % CHANGED_EVERY == CHANGED_AT
RUNS, RUN_ROWS = 4, 250_000  # the generated rows were done over 4 runs of 250,000 rows (the last: the rest)
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _images(folder: Path) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, color in enumerate([(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 200, 40)]):
        name = f"ref{i}.png"
        Image.new("RGB", (32, 32), color).save(folder / name)
        names.append(f"refs/{name}")
    return names


def make_manifests(folder: Path, rows: int) -> None:
    """``manifest-orig.parquet`` and ``manifest.parquet`` (1% of prompts edited), shaped like
    ``plan_million.py``'s catalog: passthrough columns, per-row overrides, URL, local and set references."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    local = _images(folder / "refs")
    (folder / "sets.csv").write_text(
        "set_id,image\n"
        + "".join(f"set{i},{local[i % 4]}\nset{i},https://cdn.example.com/s{i}.png\n" for i in range(50))
    )
    n = pl.col("n")
    frame = pl.DataFrame({"n": pl.int_range(0, rows, eager=True)}).select(
        id=pl.format("row-{}", n),
        sku=pl.format("SKU-{}", n // 4),
        category=pl.format("category-{}", n % 40),
        locale=pl.when(n % 2 == 0).then(pl.lit("en-US")).otherwise(pl.lit("de-DE")),
        prompt=pl.format("Product photo of item {} on a plain background, soft light, catalog style", n),
        quality=pl.when(n % 10 == 0).then(pl.lit("low")).otherwise(pl.lit(None, dtype=pl.String)),
        width=pl.when(n % 7 == 0).then(pl.lit(1536)).otherwise(pl.lit(None, dtype=pl.Int64)),
        reference_set=pl.when(n % 3 == 0).then(pl.format("set{}", n % 50)),
        reference_images=pl.when(n % 5 == 0)
        .then(pl.concat_list(pl.format("https://cdn.example.com/p{}.png", n)))
        .when(n % 5 == 1)
        .then(pl.concat_list(pl.lit(local[1]))),
    )
    frame.write_parquet(folder / "manifest-orig.parquet")
    changed = pl.int_range(0, rows) % CHANGED_EVERY == CHANGED_AT
    edited = pl.when(changed).then(pl.col("prompt") + ", new season").otherwise(pl.col("prompt"))
    frame.with_columns(prompt=edited).write_parquet(folder / "manifest.parquet")


# -- the generated state -------------------------------------------------------------------------------


@dataclass
class _Sink:
    """Where events go: ``state.db`` through the store, or a 0.1 ``ledger.jsonl``."""

    namespace: str
    write: Callable[[list[Any]], object]
    close: Callable[[], None]
    done: int = 0  # rows already recorded (a resumed generation skips them)


def _db_sink(out_dir: Path, job: str) -> _Sink:
    from pipeline.state import Store  # today's code only

    store = Store.open(out_dir / "state.db", job=job, durability="never")
    done = sum(store.counts().values())  # one (id, fingerprint) per generated row
    return _Sink(store.namespace, store.record_many, store.close, done)


def _jsonl_sink(out_dir: Path, job: str) -> _Sink:
    from pipeline.state.events import JobEvent, event_to_json

    header = JobEvent(namespace=str(uuid.uuid4()), job=job)
    ledger = (out_dir / "ledger.jsonl").open("w", encoding="utf-8")
    ledger.write(event_to_json(header) + "\n")

    def write(events: list[Any]) -> None:
        ledger.writelines(event_to_json(event) + "\n" for event in events)

    return _Sink(header.namespace, write, ledger.close)


def _at(second: float) -> str:
    return (START + dt.timedelta(seconds=second)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row_events(row: Any, k: int, namespace: str, run_id: str, rng: random.Random) -> Iterator[Any]:
    """What a run records for manifest row ``k``: submitted, (failed, submitted,) succeeded, downloaded."""
    from pipeline.state.events import (
        DownloadedEvent,
        FailedEvent,
        ImageResult,
        SubmittedEvent,
        SucceededEvent,
    )

    try:
        from pipeline.state.ids import task_uuid_for
    except ImportError:  # run by the 0.1 checkout's Python: its own
        from pipeline.ledger import task_uuid_for

    fp, rid, request = row.fingerprint, row.id, row.request
    cost = 0.005 if request.quality == "low" else 0.011
    t = k * 0.3  # about 3 rows a second per run
    attempts = 2 if k % 200 == 7 else 1
    for attempt in range(1, attempts + 1):
        task = task_uuid_for(namespace, fp, attempt)
        sub = SubmittedEvent.for_row(row, task_uuid=task, attempt=attempt, run_id=run_id, estimate_usd=cost)
        sub.at = _at(t)
        yield sub
        if attempt < attempts:
            yield FailedEvent(
                id=rid,
                fingerprint=fp,
                task_uuid=task,
                run_id=run_id,
                code="timeout",
                message="the provider timed out",
                retryable=True,
                at=_at(t + 20),
            )
    ext = request.output_format.lower()
    image_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    url = f"https://im.runware.ai/image/ws/2/ii/{image_uuid}.{ext}"
    image = ImageResult(index=0, image_uuid=image_uuid, image_url=url, cost_usd=cost)
    yield SucceededEvent(
        id=rid, fingerprint=fp, task_uuid=task, run_id=run_id, images=(image,), cost_usd=cost, at=_at(t + 9)
    )
    if k % 2 == 0:
        yield DownloadedEvent(
            id=rid,
            fingerprint=fp,
            task_uuid=task,
            index=0,
            image_uuid=image_uuid,
            path=f"images/{rid}_0.{ext}",
            sha256=hashlib.sha256(image_uuid.encode()).hexdigest(),
            bytes=rng.randint(90_000, 400_000),
            at=_at(t + 10),
        )


def write_state(spec_path: Path, fmt: str, batch_events: int = 50_000) -> None:
    """Every accepted row of the spec's manifest generated, recorded as ``fmt`` ("db" or "jsonl")."""
    from pipeline.config.jobspec import load_job_spec
    from pipeline.manifest.reader import read_manifest
    from pipeline.state.events import RunEvent

    spec = load_job_spec(spec_path)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    sink = (_db_sink if fmt == "db" else _jsonl_sink)(spec.out_dir, spec.name)
    rng = random.Random(9)
    # No ``uploaded`` events: the embedded sandbox starts empty each run, so a run uploads its references.
    events: list[Any] = []
    started, total = time.perf_counter(), 0
    if sink.done:
        print(f"  resuming after the {sink.done:,} rows already recorded", flush=True)
    try:
        rows = (row for batch in read_manifest(spec, batch_size=50_000) for row in batch.rows)
        for k, row in enumerate(rows):
            total = k + 1
            if k < sink.done:
                continue
            run_id = f"{min(k // RUN_ROWS, RUNS - 1):08x}" + "0" * 24
            if k % RUN_ROWS == 0 and k // RUN_ROWS < RUNS:
                events.append(RunEvent(run_id=run_id, at=_at(k * 0.3)))
            events.extend(_row_events(row, k, sink.namespace, run_id, rng))
            if len(events) >= batch_events:  # at a row's end: a killed generation resumes cleanly
                sink.write(events)
                events = []
            if k % 200_000 == 0 and k:
                print(f"  {k:,} rows, {time.perf_counter() - started:.0f} s", flush=True)
        sink.write(events)
    finally:
        sink.close()
    print(f"state ({fmt}) of {total:,} rows written in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("dir", type=Path)
    m.add_argument("--rows", type=int, required=True)
    s = sub.add_parser("state")
    s.add_argument("spec", type=Path)
    s.add_argument("--format", choices=("db", "jsonl"), required=True)
    args = parser.parse_args()
    if args.what == "manifest":
        make_manifests(args.dir, args.rows)
    else:
        write_state(args.spec, args.format)


if __name__ == "__main__":
    sys.exit(main())
