"""The results table: what a user reads after a run, written from the job's state store."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from helpers.paths import V01_JOB

from pipeline.config.jobspec import load_job_spec
from pipeline.errors import PipelineError, SpliceError
from pipeline.files import write_atomic
from pipeline.output.results.parquet_splice import Footer
from pipeline.output.results.write import (
    RESULTS_COLUMNS,
    rebuild_results,
    remove_stale_temps,
    table_mark,
    write_rejects,
    write_results,
)
from pipeline.state import STATE_NAME, Store
from pipeline.state.events import (
    DownloadedEvent,
    Event,
    FailedEvent,
    ImageResult,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
)
from pipeline.state.ids import task_uuid_for


@dataclass(frozen=True)
class Reject:
    row_number: int
    id: str | None
    reason: str


class _Writer:
    """What the tests append through: the job's real state store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, event: Event) -> None:
        self.store.record(event)

    def close(self) -> None:
        self.store.close()


class Job:
    """Records a realistic state for one output dir, in its store (state.db)."""

    def __init__(self, out: Path) -> None:
        store = Store.open(out / STATE_NAME, job="catalog", durability="never")
        self.writer = _Writer(store)
        self.ns = store.namespace
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
    """An output dir whose state has every kind of row."""
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

    def test_job_name_defaults_to_the_state_header(self, out: Path) -> None:
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

    def test_no_state_gives_an_empty_table(self, tmp_path: Path) -> None:
        """A job with no results yet still has a table with every column (and no state is created)."""
        frame = pl.read_parquet(write_results(tmp_path / "none", "j"))
        assert frame.height == 0 and frame.columns == list(RESULTS_COLUMNS)
        assert not (tmp_path / "none" / STATE_NAME).exists()

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
        assert sorted(p.name for p in out.iterdir()) == ["results.parquet", STATE_NAME]

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


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("id", "fingerprint", "result_index", nulls_last=True)


class TestIncremental:
    def test_the_table_says_which_state_it_shows(self, out: Path) -> None:
        """The table's Parquet metadata names the job's state and the last event it shows."""
        mark = table_mark(write_results(out))
        with Store.open(out / STATE_NAME) as store:
            assert mark["image_pipeline.state_seq"] == str(store.last_seq())
            assert mark["image_pipeline.namespace"] == store.namespace

    def test_later_events_update_only_their_rows(self, out: Path) -> None:
        """A retried row that succeeds, a new failure and a download: the table equals a full rebuild."""
        write_results(out, "catalog")
        job = Job.__new__(Job)
        store = Store.open(out / STATE_NAME, durability="never")
        job.writer, job.ns = _Writer(store), store.namespace
        t = job.submit("sku-3", attempt=2, category="bags")
        job.succeed("sku-3", t, (0.02,))
        t = job.submit("sku-4", attempt=2, category="belts")
        job.fail("sku-4", t, retryable=False)
        job.downloaded("sku-1", task_uuid_for(job.ns, "fp-sku-1", 1), 1)
        job.writer.close()
        updated = pl.read_parquet(write_results(out, "catalog"))
        assert set(updated.filter(id="sku-3")["status"]) == {"succeeded"}
        assert updated.filter(id="sku-4")["error_code"].to_list() == ["invalidPrompt"]
        assert updated.filter(id="sku-1", result_index=1)["local_path"].to_list() == ["images/sku-1_1.jpg"]
        copy = out.parent / "full"  # the same state, no table yet: every line built afresh
        copy.mkdir()
        (copy / STATE_NAME).write_bytes((out / STATE_NAME).read_bytes())
        full = pl.read_parquet(write_results(copy, "catalog"))
        assert _sorted(updated).equals(_sorted(full))

    def test_an_up_to_date_table_is_left_alone(self, out: Path) -> None:
        """Nothing happened since the last write: the file is not rewritten."""
        path = write_results(out, "catalog")
        before = path.stat().st_ino
        write_results(out, "catalog")
        assert path.stat().st_ino == before

    def test_a_table_without_mark_is_rebuilt(self, out: Path) -> None:
        """A table from 0.1 or written by hand (no mark) is replaced by the state's lines."""
        pl.DataFrame({"id": ["stale"]}).write_parquet(out / "results.parquet")
        frame = pl.read_parquet(write_results(out, "catalog"))
        assert "stale" not in frame["id"].to_list() and frame.height == 4


class TestFrom01:
    def test_the_01_table_is_rebuilt_line_for_line(self, tmp_path: Path) -> None:
        """The real 0.1 job: imported on first use, its table rebuilt with the lines 0.1 wrote."""
        folder = tmp_path / "v01_job"
        shutil.copytree(V01_JOB, folder)
        out = folder / "out"
        old = pl.read_parquet(out / "results.parquet")
        new = pl.read_parquet(write_results(out, "v01-fixture"))
        assert (out / STATE_NAME).exists()
        key = ["id", "fingerprint", "result_index"]
        left, right = old.sort(key), new.select(old.columns).sort(key)
        assert left.drop("latency_s").equals(right.drop("latency_s"))
        assert right["latency_s"].round(6).equals(left["latency_s"].round(6))


def test_a_killed_write_leaves_nothing_the_next_run_keeps(out: Path) -> None:
    """Temp files and part folders of a write killed half-way are removed under the job's lock."""
    (out / ".results.parquet.abc123.tmp").write_bytes(b"PAR1")
    (out / ".results-parts.xyz").mkdir()
    (out / ".results-parts.xyz" / "000000.parquet").write_bytes(b"PAR1")
    removed = remove_stale_temps(out)
    assert sorted(p.name for p in removed) == [".results-parts.xyz", ".results.parquet.abc123.tmp"]
    assert sorted(p.name for p in out.iterdir()) == [STATE_NAME]


def _reopen(out: Path) -> Job:
    """A Job recording into the existing state of ``out``."""
    job = Job.__new__(Job)
    store = Store.open(out / STATE_NAME, durability="never")
    job.writer, job.ns = _Writer(store), store.namespace
    return job


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups of a few lines, so that a small table has many (as a big one has)."""
    monkeypatch.setattr("pipeline.output.results.table.ROW_GROUP", 4)
    monkeypatch.setattr("pipeline.output.results.table.SMALL_GROUP", 3)


def _catalog(out: Path, rows: int, **passthrough: Any) -> Job:
    job = Job(out)
    for i in range(rows):
        t = job.submit(f"r{i:02d}", **passthrough)
        job.succeed(f"r{i:02d}", t, (0.01,))
    return job


def _groups(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _full(out: Path) -> pl.DataFrame:
    """The table a full rebuild writes from the same state."""
    copy = out.parent / f"{out.name}-full"
    copy.mkdir()
    (copy / STATE_NAME).write_bytes((out / STATE_NAME).read_bytes())
    return pl.read_parquet(write_results(copy, "catalog"))


@pytest.mark.usefixtures("small_groups")
class TestRowGroups:
    def test_new_lines_come_after_the_kept_ones_in_order(self, tmp_path: Path) -> None:
        """An update keeps the previous lines in their order and adds the new ones after them."""
        job = _catalog(tmp_path, 10, category="a")
        job.writer.close()
        before = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert _groups(tmp_path / "results.parquet") == [4, 4, 2]
        job = _reopen(tmp_path)
        for id in ("new-1", "new-2", "new-3"):
            job.succeed(id, job.submit(id, category="b"), (0.02,))
        job.writer.close()
        after = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert after.head(10).equals(before)
        assert after["id"].to_list()[10:] == ["new-1", "new-2", "new-3"]
        assert _sorted(after).equals(_sorted(_full(tmp_path)))
        assert _groups(tmp_path / "results.parquet") == [4, 4, 4, 1]  # the small last group grew

    def test_a_changed_line_in_an_old_group_is_replaced(self, tmp_path: Path) -> None:
        """A download, a retry that succeeds and a row sent again: their old lines go, wherever they lie."""
        job = _catalog(tmp_path, 8)
        t = job.submit("bad")
        job.fail("bad", t, retryable=False)
        t = job.submit("retried")
        job.fail("retried", t, retryable=False)
        job.writer.close()
        write_results(tmp_path, "catalog")
        job = _reopen(tmp_path)
        job.downloaded("r01", task_uuid_for(job.ns, "fp-r01", 1), 0)
        t = job.submit("retried", attempt=2)  # in doubt now: its failure line goes
        job.succeed("r05", task_uuid_for(job.ns, "fp-r05", 1), (0.5,))  # paid twice: the first stays
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert frame.filter(id="r01")["local_path"].to_list() == ["images/r01_0.jpg"]
        assert "retried" not in frame["id"].to_list() and frame.filter(id="bad").height == 1
        assert frame.filter(id="r05")["cost_usd"].to_list() == [0.01]
        assert _sorted(frame).equals(_sorted(_full(tmp_path)))

    def test_a_new_passthrough_column_reaches_the_old_lines(self, tmp_path: Path) -> None:
        """A column only the new lines have is added, null on the old ones; an int column that gets a
        float becomes float."""
        job = _catalog(tmp_path, 6, size=3)
        job.writer.close()
        write_results(tmp_path, "catalog")
        job = _reopen(tmp_path)
        job.succeed("n", job.submit("n", size=2.5, colour="red"), (0.01,))
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert frame.columns[len(RESULTS_COLUMNS) :] == ["size", "colour"]
        assert frame.schema["size"] == pl.Float64
        assert frame["size"].to_list() == [3.0] * 6 + [2.5]
        assert frame["colour"].to_list() == [None] * 6 + ["red"]

    def test_types_with_nothing_in_common_become_text_in_old_lines_too(self, tmp_path: Path) -> None:
        """A passthrough column that held lists and now gets a string is text (JSON) in every line."""
        job = _catalog(tmp_path, 5, tags=["a", "b"])
        job.writer.close()
        write_results(tmp_path, "catalog")
        job = _reopen(tmp_path)
        job.succeed("n", job.submit("n", tags="plain"), (0.01,))
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert frame["tags"].to_list() == ['["a", "b"]'] * 5 + ["plain"]

    def test_a_renamed_job_renames_every_line(self, tmp_path: Path) -> None:
        """The job column names the job the table was last written for, in the old lines too."""
        job = _catalog(tmp_path, 9)
        job.writer.close()
        write_results(tmp_path, "catalog")
        job = _reopen(tmp_path)
        job.succeed("n", job.submit("n"), (0.01,))
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path, "catalog-v2"))
        assert set(frame["job"]) == {"catalog-v2"} and frame.height == 10

    def test_a_table_can_lose_its_last_line(self, tmp_path: Path) -> None:
        """Every line gone (a failed row sent again): the table is empty, with its columns."""
        job = Job(tmp_path)
        job.fail("x", job.submit("x"), retryable=False)
        job.writer.close()
        write_results(tmp_path, "catalog")
        job = _reopen(tmp_path)
        job.submit("x", attempt=2)
        job.writer.close()
        frame = pl.read_parquet(write_results(tmp_path, "catalog"))
        assert frame.height == 0 and frame.columns[: len(RESULTS_COLUMNS)] == list(RESULTS_COLUMNS)

    def test_the_csv_follows_the_table(self, tmp_path: Path) -> None:
        """results.csv has the same lines as results.parquet, over several row groups."""
        job = _catalog(tmp_path, 7, tags=["x"])
        job.writer.close()
        write_results(tmp_path, "catalog", formats=("parquet", "csv"))
        csv = pl.read_csv(tmp_path / "results.csv")
        assert csv.height == 7 and csv["id"].to_list() == read(tmp_path)["id"].to_list()
        assert csv["tags"].to_list() == ['["x"]'] * 7


@pytest.mark.usefixtures("small_groups")
def test_a_previous_table_that_cannot_be_spliced_is_rebuilt_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A previous table whose footer the splice cannot read (a newer Parquet feature, a damaged
    file): the update rebuilds the table from the state instead of failing the run."""
    job = _catalog(tmp_path, 9)
    job.writer.close()
    write_results(tmp_path, "catalog")
    job = _reopen(tmp_path)
    job.succeed("n", job.submit("n"), (0.01,))
    job.writer.close()

    read = Footer.read

    def unreadable(cls: type[Footer], f: IO[bytes]) -> Footer:
        if Path(getattr(f, "name", "")).name == "results.parquet":
            raise SpliceError("unknown Thrift compact type 13")
        return read(f)

    monkeypatch.setattr(Footer, "read", classmethod(unreadable))
    frame = pl.read_parquet(write_results(tmp_path, "catalog"))
    monkeypatch.undo()
    assert frame.height == 10
    assert _sorted(frame).equals(_sorted(_full(tmp_path)))
