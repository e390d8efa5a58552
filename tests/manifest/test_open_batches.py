"""A run's manifest batches: finished rows are only counted, the others come as the same Row objects
``read_manifest`` gives (fingerprints included), with their rejects."""

from __future__ import annotations

from pathlib import Path

from helpers.manifest_jobs import load, read_all

from pipeline.manifest.reader import open_batches, open_manifest
from pipeline.state import Store
from pipeline.state.events import FailedEvent, ImageResult, SubmittedEvent, SucceededEvent
from pipeline.state.ids import task_uuid_for

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"
CSV = (
    "id,prompt,model\n"
    + "".join(f"r{i},product {i},{'openai:gpt-image@2' if i % 2 else 'bytedance:5@0'}\n" for i in range(12))
    + ",no id here,openai:gpt-image@2\n"
)


def _record(store: Store, row_id: str, fp: str, verdict: str) -> None:
    task = task_uuid_for(NS, fp, 1)
    store.record(
        SubmittedEvent(
            id=row_id, fingerprint=fp, task_uuid=task, attempt=1, run_id="r", estimate_usd=0.01, request={}
        )
    )
    if verdict == "succeeded":
        image = ImageResult(index=0, image_uuid=f"img-{row_id}", image_url="https://x/i.jpg", cost_usd=0.01)
        store.record(
            SucceededEvent(
                id=row_id, fingerprint=fp, task_uuid=task, run_id="r", images=(image,), cost_usd=0.01
            )
        )
    elif verdict == "failed":
        store.record(
            FailedEvent(
                id=row_id, fingerprint=fp, task_uuid=task, run_id="r", code="x", message="no", retryable=False
            )
        )


def test_finished_rows_are_counted_and_the_others_are_the_rows_read_manifest_gives(tmp_path: Path) -> None:
    spec = load(tmp_path, CSV, spec="[defaults]\nwidth = 1024\nheight = 1024\n")
    everything = read_all(spec)
    by_id = {row.id: row for row in everything.rows}
    with Store.open(tmp_path / "state.db", job="t") as store:
        for row_id in ("r0", "r1", "r2", "r3", "r4"):
            _record(store, row_id, by_id[row_id].fingerprint, "succeeded")
        _record(store, "r5", by_id["r5"].fingerprint, "failed")
        _record(store, "r6", by_id["r6"].fingerprint, "in doubt")
        _record(store, "r7", "ab" * 32, "succeeded")  # an earlier version of r7: r7 is changed work
        with open_manifest(spec, 4) as manifest:
            batches = list(open_batches(manifest, store.unfinished, 4))
    rows = [row for batch in batches for row in batch.rows]
    assert [row.id for row in rows] == ["r5", "r6", "r7", "r8", "r9", "r10", "r11"]
    assert rows == [by_id[row.id] for row in rows]  # fingerprints, requests, passthrough: identical
    done: dict[str, int] = {}
    for batch in batches:
        for model, n in batch.done.items():
            done[model] = done.get(model, 0) + n
    assert done == {"bytedance:5@0": 3, "openai:gpt-image@2": 2}  # r0, r2, r4 / r1, r3
    assert [r.reason for batch in batches for r in batch.rejects] == [r.reason for r in everything.rejects]
    assert len(everything.rejects) == 1
