"""The state store on a realistic job's events, beside the same events as a 0.1 JSONL ledger.

    uv run python benchmarks/state_store.py [--rows 100000] [--batch 64]

For N generated rows (each: submitted, succeeded with one image, downloaded), it measures:
- events per second recorded one transaction per event (``Store.record``) and with group commit
  (``record_many`` of ``--batch`` events), durability "group";
- bytes on disk per row: the database (after compacting the log) vs the same events as 0.1's
  ``ledger.jsonl`` (its lines written directly: 0.1's writer is not in this tree; for its append rate, run
  0.1's own benchmarks in its checkout);
- importing that JSONL ledger into a new database;
- the reads a run and ``status`` make: counts and spend, 10,000 row states in one batch, next attempt.
Data goes to a temp dir that is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.state import Store, import_ledger
from pipeline.state.events import (
    DownloadedEvent,
    Event,
    ImageResult,
    JobEvent,
    SubmittedEvent,
    SucceededEvent,
    event_to_json,
)
from pipeline.state.ids import task_uuid_for

WORDS = [
    "oak",
    "walnut",
    "brass",
    "linen",
    "ceramic",
    "glass",
    "amber",
    "leather",
    "canvas",
    "wool",
    "cotton",
    "marble",
    "stoneware",
    "seagrass",
    "studio",
    "warm",
    "soft",
    "morning",
    "evening",
    "shadow",
    "window",
    "table",
    "shelf",
    "chair",
    "lamp",
    "vase",
    "rug",
    "tray",
    "mug",
    "bowl",
    "jug",
    "white",
    "grey",
    "green",
    "blue",
    "tan",
    "natural",
    "minimal",
    "bright",
    "cosy",
    "plain",
    "background",
    "room",
    "kitchen",
    "bedroom",
]
NAMESPACE = str(uuid.uuid4())


def events(rows: int, seed: int = 7) -> Iterator[Event]:
    """A realistic job's events: varied prompts, real-looking hashes and UUIDs, passthrough columns."""
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex
    for i in range(rows):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        fp = hashlib.sha256(f"{i}:{prompt}".encode()).hexdigest()
        task = task_uuid_for(NAMESPACE, fp, 1)
        row_id = f"SKU-{i:07d}"
        request = {
            "model": "openai:1@2",
            "prompt": prompt,
            "width": 1024,
            "height": rng.choice((1024, 1536)),
            "quality": rng.choice(("low", "medium", "high")),
            "background": "opaque",
            "output_format": "JPG",
            "number_results": 1,
            "reference_images": [],
        }
        passthrough = {"sku": row_id, "category": rng.choice(WORDS), "locale": "en-GB"}
        yield SubmittedEvent(
            id=row_id,
            fingerprint=fp,
            task_uuid=task,
            attempt=1,
            run_id=run_id,
            estimate_usd=0.011,
            request=request,
            passthrough=passthrough,
        )
        image_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        url = f"https://im.runware.ai/image/ws/2/ii/{image_uuid}.jpg"
        image = ImageResult(index=0, image_uuid=image_uuid, image_url=url, cost_usd=0.011)
        yield SucceededEvent(
            id=row_id, fingerprint=fp, task_uuid=task, run_id=run_id, images=(image,), cost_usd=0.011
        )
        yield DownloadedEvent(
            id=row_id,
            fingerprint=fp,
            task_uuid=task,
            index=0,
            image_uuid=image_uuid,
            path=f"/data/output/catalog/images/{row_id}_0.jpg",
            sha256=hashlib.sha256(image_uuid.encode()).hexdigest(),
            bytes=rng.randint(90_000, 400_000),
        )


def timed(label: str, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    print(f"  {label}: {took:.2f} s")
    return took


def write_ledger(path: Path, rows: int) -> None:
    """The events as 0.1's ``ledger.jsonl``: its job header, then one JSON line per event."""
    with path.open("w", encoding="utf-8") as ledger:
        ledger.write(event_to_json(JobEvent(namespace=NAMESPACE, job="bench")) + "\n")
        ledger.writelines(event_to_json(event) + "\n" for event in events(rows))


def record_each(path: Path, rows: int) -> None:
    with Store.open(path, durability="group") as store:
        store.record(JobEvent(namespace=NAMESPACE, job="bench"))
        for event in events(rows):
            store.record(event)
        store.compact()


def record_batched(path: Path, rows: int, batch: int) -> None:
    with Store.open(path, durability="group") as store:
        store.record(JobEvent(namespace=NAMESPACE, job="bench"))
        pending: list[Event] = []
        for event in events(rows):
            pending.append(event)
            if len(pending) == batch:
                store.record_many(pending)
                pending.clear()
        store.record_many(pending)
        store.compact()


def reads(path: Path, rows: int) -> None:
    with Store.open(path) as store:
        keys = [(f"SKU-{i:07d}", "0" * 64) for i in range(0, rows, max(1, rows // 10_000))]
        timed("counts + spent (status)", lambda: (store.counts(), store.spent_usd()))
        timed(f"row_states of {len(keys)} keys in one batch", lambda: store.row_states(keys))
        timed("1,000 next_attempt lookups", lambda: [store.next_attempt(f"{i:064x}") for i in range(1000)])
        timed("in_doubt + undownloaded", lambda: (store.in_doubt(), store.undownloaded()))


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows for sizes and import")
    parser.add_argument("--rate-rows", type=int, default=20_000, help="rows for the write rates")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="state-bench-") as tmp:
        folder = Path(tmp)
        rates(folder, args.rate_rows, args.batch)
        sizes(folder, args.rows, args.batch)


def rates(folder: Path, rows: int, batch: int) -> None:
    n_events = rows * 3
    print(f"write rates: {rows:,} rows, {n_events:,} events")
    generate = timed("generating the events alone (baseline)", lambda: sum(1 for _ in events(rows)))
    one = timed("Store.record, one transaction per event", lambda: record_each(folder / "each.db", rows))
    many = timed(
        f"Store.record_many, {batch} per transaction", lambda: record_batched(folder / "many.db", rows, batch)
    )
    for label, took in (("store, each", one), (f"store, batch {batch}", many)):
        rate = n_events / max(took - generate, 1e-9)
        print(f"  {label}: {rate:,.0f} events/s (generation time subtracted)")


def sizes(folder: Path, rows: int, batch: int) -> None:
    print(f"sizes and import: {rows:,} rows, {rows * 3:,} events")
    ledger, batched, imported = folder / "ledger.jsonl", folder / "batched.db", folder / "imported.db"
    timed("the same events as a 0.1 ledger.jsonl (plain writes)", lambda: write_ledger(ledger, rows))
    timed(f"Store.record_many, {batch} per transaction", lambda: record_batched(batched, rows, batch))
    timed("import_ledger of the JSONL ledger", lambda: import_ledger(ledger, imported))
    for label, path in (("ledger.jsonl", ledger), ("state.db", batched), ("imported state.db", imported)):
        print(f"  {label}: {size(path) / rows:,.0f} bytes per row")
    reads(batched, rows)


if __name__ == "__main__":
    main()
