"""The results table: what a user reads after a run, rebuilt from the ledger alone."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl
import pytest

from pipeline.errors import PipelineError
from pipeline.jobspec import load_job_spec
from pipeline.ledger import (
    LEDGER_NAME,
    DownloadedEvent,
    FailedEvent,
    ImageResult,
    LedgerWriter,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    load_state,
    task_uuid_for,
)
from pipeline.results import (
    RESULTS_COLUMNS,
    rebuild_results,
    status_summary,
    write_atomic,
    write_rejects,
    write_results,
)


@dataclass(frozen=True)
class Reject:
    row_number: int
    id: str | None
    reason: str


class Job:
    """Writes a realistic ledger for one output dir."""

    def __init__(self, out: Path) -> None:
        self.writer = LedgerWriter(out / LEDGER_NAME, job="catalog", fsync="never")
        self.ns = self.writer.namespace
        self.writer.append(RunEvent(run_id="run1"))

    def submit(
        self,
        id: str,
        attempt: int = 1,
        n: int = 1,
        options: dict[str, str] | None = None,
        **passthrough: object,
    ) -> str:
        task = task_uuid_for(self.ns, f"fp-{id}", attempt)
        request: dict[str, object] = {
            "model": "openai:1@2",
            "prompt": f"a photo of {id}",
            "width": 1024,
            "height": 768,
            "quality": "medium",
            "background": "opaque",
            "output_format": "JPG",
            "number_results": n,
            "reference_images": [],
        }
        if options:
            request["options"] = options
        self.writer.append(
            SubmittedEvent(
                id=id,
                fingerprint=f"fp-{id}",
                task_uuid=task,
                attempt=attempt,
                run_id="run1",
                estimate_usd=0.02 * n,
                request=request,
                passthrough=dict(passthrough),
                at="2026-11-23T10:00:00.000Z",
            )
        )
        return task

    def succeed(self, id: str, task: str, costs: tuple[float | None, ...]) -> None:
        images = tuple(
            ImageResult(index=i, image_uuid=f"u-{id}-{i}", image_url=f"http://h/{id}-{i}.jpg", cost_usd=c)
            for i, c in enumerate(costs)
        )
        total = None if None in costs else sum(c for c in costs if c is not None)
        self.writer.append(
            SucceededEvent(
                id=id,
                fingerprint=f"fp-{id}",
                task_uuid=task,
                run_id="run1",
                images=images,
                cost_usd=total,
                at="2026-11-23T10:00:02.500Z",
            )
        )

    def fail(self, id: str, task: str, retryable: bool) -> None:
        self.writer.append(
            FailedEvent(
                id=id,
                fingerprint=f"fp-{id}",
                task_uuid=task,
                run_id="run1",
                code="invalidPrompt" if not retryable else "timeout",
                message="the prompt was refused" if not retryable else "timed out",
                retryable=retryable,
                at="2026-11-23T10:00:01.000Z",
            )
        )

    def downloaded(self, id: str, task: str, index: int) -> None:
        self.writer.append(
            DownloadedEvent(
                id=id,
                fingerprint=f"fp-{id}",
                task_uuid=task,
                index=index,
                image_uuid=f"u-{id}-{index}",
                path=f"images/{id}_{index}.jpg",
                sha256="ab" * 32,
                bytes=1234,
            )
        )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output dir whose ledger has every kind of row."""
    out = tmp_path / "out"
    job = Job(out)
    t = job.submit("sku-1", n=2, category="shoes", tags=["a", "b"])
    job.succeed("sku-1", t, (0.011, 0.011))
    job.downloaded("sku-1", t, 0)
    t = job.submit("sku-2", category="hats")
    job.fail("sku-2", t, retryable=True)
    t = job.submit("sku-2", attempt=2, category="hats")
    job.fail("sku-2", t, retryable=False)
    t = job.submit("sku-3", category="bags")
    job.fail("sku-3", t, retryable=True)  # pending: no line
    job.submit("sku-4", category="belts")  # in doubt: no line
    t = job.submit("sku-5", status="vip")
    job.succeed("sku-5", t, (None,))
    job.writer.close()
    return out


def read(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "results.parquet")


class TestResultsTable:
    def test_one_line_per_image_and_per_failed_row(self, out: Path) -> None:
        """Succeeded rows give a line per image, failed-for-good rows one line; pending/in-doubt none."""
        frame = pl.read_parquet(write_results(out))
        assert sorted(
            zip(frame["id"], frame["status"], frame["result_index"], strict=True), key=str
        ) == sorted(
            [
                ("sku-1", "succeeded", 0),
                ("sku-1", "succeeded", 1),
                ("sku-2", "failed", None),
                ("sku-5", "succeeded", 0),
            ],
            key=str,
        )

    def test_columns_in_order_with_types(self, out: Path) -> None:
        """The documented columns come first, in order and with their types, then the passthrough ones."""
        frame = pl.read_parquet(write_results(out))
        assert frame.columns[: len(RESULTS_COLUMNS)] == list(RESULTS_COLUMNS)
        for name, dtype in RESULTS_COLUMNS.items():
            assert frame.schema[name] == dtype, name
        assert frame.columns[len(RESULTS_COLUMNS) :] == ["category", "tags", "status_passthrough"]

    def test_succeeded_image_line(self, out: Path) -> None:
        """An image line has its UUID, URL, billed cost, request settings, timing and download."""
        frame = pl.read_parquet(write_results(out)).filter(id="sku-1", result_index=0)
        line = frame.row(0, named=True)
        assert line["image_uuid"] == "u-sku-1-0" and line["image_url"] == "http://h/sku-1-0.jpg"
        assert line["cost_usd"] == pytest.approx(0.011) and line["cost_source"] == "provider"
        assert line["estimate_usd"] == pytest.approx(0.02)
        assert (line["model"], line["width"], line["height"], line["output_format"]) == (
            "openai:1@2",
            1024,
            768,
            "JPG",
        )
        assert line["prompt"] == "a photo of sku-1"
        assert line["local_path"] == "images/sku-1_0.jpg" and line["bytes"] == 1234
        assert line["attempts"] == 1 and line["run_id"] == "run1" and line["job"] == "catalog"
        assert line["submitted_at"] == dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
        assert line["latency_s"] == pytest.approx(2.5)
        assert line["category"] == "shoes" and line["tags"] == ["a", "b"]
        second = (
            pl.read_parquet(out / "results.parquet").filter(id="sku-1", result_index=1).row(0, named=True)
        )
        assert second["local_path"] is None  # not downloaded yet

    def test_options_and_resolution_say_what_each_image_asked_for(self, tmp_path: Path) -> None:
        """resolution and the options (JSON) of each request; null for a 0.1 request without any."""
        job = Job(tmp_path)
        t = job.submit("tier", options={"resolution": "2k", "seed": "7"})
        job.succeed("tier", t, (0.1,))
        t = job.submit("plain")
        job.succeed("plain", t, (0.01,))
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path))
        tier = frame.filter(id="tier").row(0, named=True)
        assert tier["resolution"] == "2k"
        assert json.loads(tier["options"]) == {"resolution": "2k", "seed": "7"}
        plain = frame.filter(id="plain").row(0, named=True)
        assert (plain["resolution"], plain["options"], plain["quality"]) == (None, None, "medium")

    def test_failed_line(self, out: Path) -> None:
        """A failed row says why, after how many attempts, and keeps its passthrough."""
        line = pl.read_parquet(write_results(out)).filter(id="sku-2").row(0, named=True)
        assert (line["error_code"], line["error_message"]) == ("invalidPrompt", "the prompt was refused")
        assert line["attempts"] == 2 and line["cost_usd"] is None and line["image_uuid"] is None
        assert line["category"] == "hats"

    def test_cost_falls_back_to_the_estimate(self, out: Path) -> None:
        """No cost from the provider: the estimate is used and cost_source says so."""
        line = pl.read_parquet(write_results(out)).filter(id="sku-5").row(0, named=True)
        assert line["cost_source"] == "estimate" and line["cost_usd"] == pytest.approx(0.02)
        assert line["status"] == "succeeded" and line["status_passthrough"] == "vip"

    def test_job_name_defaults_to_the_ledger_header(self, out: Path) -> None:
        """Rebuilt without a spec, the job column still names the job."""
        assert set(pl.read_parquet(write_results(out, job=None))["job"]) == {"catalog"}

    def test_csv_has_the_same_lines(self, out: Path) -> None:
        """results.csv mirrors the parquet table; list columns become JSON text."""
        write_results(out, "catalog", formats=("parquet", "csv"))
        csv = pl.read_csv(out / "results.csv")
        parquet = read(out)
        assert csv.columns == parquet.columns and csv.height == parquet.height
        tags = csv.filter(pl.col("id") == "sku-1")["tags"].to_list()
        assert json.loads(tags[0]) == ["a", "b"]

    def test_rebuild_from_spec(self, out: Path, tmp_path: Path) -> None:
        """`pipeline results JOB.toml` rebuilds the table in the spec's output dir, with its formats."""
        spec_path = tmp_path / "job.toml"
        spec_path.write_text(
            f'name = "catalog"\nmanifest = "m.csv"\noutput_dir = "{out}"\n'
            '[output]\nformats = ["parquet", "csv"]\n'
        )
        path = rebuild_results(load_job_spec(spec_path))
        assert path == out / "results.parquet" and (out / "results.csv").exists()
        assert read(out).height == 4

    def test_empty_ledger_gives_an_empty_table(self, tmp_path: Path) -> None:
        """A job with no results yet still has a table with every column."""
        frame = pl.read_parquet(write_results(tmp_path / "none", "j"))
        assert frame.height == 0 and frame.columns == list(RESULTS_COLUMNS)

    def test_mixed_passthrough_types_become_text(self, tmp_path: Path) -> None:
        """A passthrough column with mixed types is kept as text rather than failing the write."""
        job = Job(tmp_path)
        for i, value in enumerate([1, "two", {"x": 3}]):
            t = job.submit(f"r{i}", code=value)
            job.succeed(f"r{i}", t, (0.01,))
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path))
        assert sorted(frame["code"].to_list()) == sorted(["1", "two", '{"x": 3}'])


class TestAtomicWrites:
    def test_failed_write_leaves_the_old_table(self, out: Path) -> None:
        """A write that breaks half-way leaves the previous table intact and no temp file behind."""
        path = write_results(out)
        before = path.read_bytes()

        def broken(f: IO[bytes]) -> None:
            f.write(b"PAR1 partial")
            raise OSError(28, "No space left on device")

        with pytest.raises(PipelineError, match="No space left"):
            write_atomic(path, broken)
        assert path.read_bytes() == before
        assert sorted(p.name for p in out.iterdir()) == ["ledger.jsonl", "results.parquet"]

    def test_readers_never_see_a_partial_table(self, out: Path) -> None:
        """While the table is rewritten again and again, every read gets a whole table."""
        write_results(out, formats=("parquet", "csv"))
        stop = threading.Event()

        def rewrite() -> None:
            while not stop.is_set():
                write_results(out, formats=("parquet", "csv"))

        thread = threading.Thread(target=rewrite)
        thread.start()
        try:
            for _ in range(30):
                assert read(out).height == 4
                assert pl.read_csv(out / "results.csv").height == 4
        finally:
            stop.set()
            thread.join()


class TestRejects:
    def test_rejects_table(self, tmp_path: Path) -> None:
        """rejects.parquet lists row number, id and reason; an empty run replaces old rejects."""
        write_rejects(
            tmp_path, [Reject(3, "sku-9", "width 1000 not allowed"), Reject(7, None, "empty prompt")]
        )
        frame = pl.read_parquet(tmp_path / "rejects.parquet")
        assert frame.columns == ["row_number", "id", "reason"]
        assert frame.rows() == [(3, "sku-9", "width 1000 not allowed"), (7, None, "empty prompt")]
        write_rejects(tmp_path, [])
        assert pl.read_parquet(tmp_path / "rejects.parquet").height == 0


class TestStatus:
    def test_counts_from_the_ledger(self, out: Path) -> None:
        """Without the manifest: every row the ledger saw, by state, plus images and money."""
        summary = status_summary(load_state(out / LEDGER_NAME))
        assert summary["rows"] == {
            "total": 5,
            "rejected": 0,
            "succeeded": 2,
            "failed": 1,
            "pending": 1,
            "in_doubt": 1,
        }
        assert summary["images"] == 3
        assert summary["spent_usd"] == pytest.approx(0.022)
        json.dumps(summary)

    def test_counts_against_the_manifest(self, out: Path) -> None:
        """With the manifest's rows: unseen rows are pending and stale fingerprints are not counted."""
        state = load_state(out / LEDGER_NAME)
        keys = [("sku-1", "fp-sku-1"), ("sku-2", "fp-sku-2"), ("sku-3", "fp-sku-3-edited"), ("new", "fp-new")]
        summary = status_summary(state, total=6, rejected=2, keys=keys)
        assert summary["rows"] == {
            "total": 6,
            "rejected": 2,
            "succeeded": 1,
            "failed": 1,
            "pending": 2,
            "in_doubt": 0,
        }
