"""Local reference images: uploaded once per content, and again when the provider no longer knows an
earlier run's upload (the embedded sandbox never does; the real API may expire them).

End to end through ``pipeline run`` against the sandbox on loopback: the embedded one (a new provider each
run), or two ``SandboxThread``s whose billing shows what each run was charged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers.job_state import state_events
from helpers.manifest_jobs import image, write_job

from pipeline.cli import main
from pipeline.errors import PermanentProviderError, TransientProviderError
from pipeline.run.uploads import is_reference_refusal
from pipeline.sandbox import SandboxHandle, SandboxSettings, SandboxThread
from pipeline.state.events import FailedEvent, UploadedEvent

UNKNOWN_UUID = "6f1c1a52-1111-4000-8000-000000000000"  # a well-formed imageUUID no provider knows
SPEC = "[output]\ndownload = false\n[limits]\nmax_attempts = 3\n"


def catalog(folder: Path, prompt: str, refs: str = "refs/shoe.png", endpoint: str | None = None) -> Path:
    """Two rows sharing the reference image(s) ``refs`` (``|``-separated)."""
    provider = f'[provider]\nprofile = "sandbox"\nendpoint = "{endpoint}"\n' if endpoint else ""
    rows = "".join(f'{i},{prompt} {i} on white,"{refs}"\n' for i in ("a", "b"))
    return write_job(folder, "id,prompt,reference_images\n" + rows, spec=provider + SPEC)


def run(job: Path) -> int:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(job), "--quiet"])
    return int(exited.value.code or 0)


def events(folder: Path, kind: type[Any]) -> list[Any]:
    return [e for e in state_events(folder / "out") if isinstance(e, kind)]


def latest(folder: Path, prompt: str) -> pl.DataFrame:
    """The results of the rows written with ``prompt``, by row id."""
    results = pl.read_parquet(folder / "out" / "results.parquet")
    return results.filter(pl.col("prompt").str.starts_with(prompt)).sort("id")


@pytest.fixture
def sandboxes() -> Iterator[list[SandboxHandle]]:
    """Two independent sandboxes: the second knows nothing the first was sent."""
    threads = [SandboxThread(SandboxSettings(seed=3)) for _ in range(2)]
    handles = [thread.__enter__() for thread in threads]
    yield handles
    for thread in threads:
        thread.__exit__(None, None, None)


class TestAnEarlierRunsUpload:
    def test_the_next_run_uploads_the_file_again(self, tmp_path: Path) -> None:
        """Embedded sandbox, prompts edited between runs: the second run succeeds, uploading the shared
        file again once; a row refused over the old upload is retried as a new task (a row sent after
        the new upload goes through at once)."""
        image(tmp_path / "refs" / "shoe.png")
        assert run(catalog(tmp_path, "product photo")) == 0
        assert run(catalog(tmp_path, "studio photo")) == 0
        rows = latest(tmp_path, "studio photo")
        assert rows["status"].to_list() == ["succeeded", "succeeded"]
        uploads = events(tmp_path, UploadedEvent)
        assert len(uploads) == 2 and uploads[0].sha256 == uploads[1].sha256  # once per run
        refused = events(tmp_path, FailedEvent)
        assert refused  # the first row sent with the old upload
        assert [(e.code, e.retryable) for e in refused] == [("invalidReferenceImages", True)] * len(refused)
        assert sorted(rows["attempts"].to_list()) == sorted(1 + sum(e.id == i for e in refused) for i in "ab")
        assert not set(rows["task_uuid"]) & {e.task_uuid for e in refused}

    def test_each_row_is_charged_once(self, tmp_path: Path, sandboxes: list[SandboxHandle]) -> None:
        """Run 1 on one sandbox, run 2 on a fresh one: run 2 is charged one task per row, no more."""
        first, second = sandboxes
        image(tmp_path / "refs" / "shoe.png")
        assert run(catalog(tmp_path, "product photo", endpoint=first.url)) == 0
        assert run(catalog(tmp_path, "studio photo", endpoint=second.url)) == 0
        bill = second.billing()
        assert (bill["tasks"], bill["duplicate_tasks"], bill["duplicate_prompts"]) == (2, 0, 0)
        assert float(bill["total_usd"]) == pytest.approx(latest(tmp_path, "studio photo")["cost_usd"].sum())
        refused = len(events(tmp_path, FailedEvent))  # 1 or 2: rows sent before the new upload
        assert bill["requests"] == 1 + refused + 1 + 2  # the key check, refused, the upload, paid

    def test_a_run_that_uploaded_it_does_not_upload_again(self, tmp_path: Path) -> None:
        """A file uploaded in this run is trusted: a row refused over it fails for good, one attempt."""
        image(tmp_path / "refs" / "shoe.png")
        assert run(catalog(tmp_path, "product photo", refs=f"refs/shoe.png|{UNKNOWN_UUID}")) == 1
        assert latest(tmp_path, "product photo")["status"].to_list() == ["failed", "failed"]
        assert latest(tmp_path, "product photo")["attempts"].to_list() == [1, 1]
        assert len(events(tmp_path, UploadedEvent)) == 1


class TestOtherRefusals:
    def test_an_unknown_image_uuid_fails_the_row_after_one_attempt(
        self, tmp_path: Path, sandboxes: list[SandboxHandle]
    ) -> None:
        """A reference the provider refuses that no run uploaded: failed for good, sent once."""
        sandbox = sandboxes[0]
        assert run(catalog(tmp_path, "product photo", refs=UNKNOWN_UUID, endpoint=sandbox.url)) == 1
        assert latest(tmp_path, "product photo")["status"].to_list() == ["failed", "failed"]
        assert [e.retryable for e in events(tmp_path, FailedEvent)] == [False, False]
        assert sandbox.billing()["requests"] == 3  # the key check, 2 refused
        assert sandbox.billing()["tasks"] == 0

    def test_a_retry_refused_again_fails_the_row(
        self, tmp_path: Path, sandboxes: list[SandboxHandle]
    ) -> None:
        """An earlier run's upload plus an unknown UUID: uploaded again and retried once, then failed for
        good; never a loop."""
        first, second = sandboxes
        image(tmp_path / "refs" / "shoe.png")
        refs = f"refs/shoe.png|{UNKNOWN_UUID}"
        assert run(catalog(tmp_path, "product photo", refs=refs, endpoint=first.url)) == 1
        assert run(catalog(tmp_path, "studio photo", refs=refs, endpoint=second.url)) == 1
        rows = latest(tmp_path, "studio photo")
        assert rows["status"].to_list() == ["failed", "failed"]
        assert set(rows["attempts"].to_list()) <= {1, 2}  # 1: sent after the new upload, refused for good
        attempts = sum(rows["attempts"].to_list())
        assert second.billing()["requests"] == 1 + 1 + attempts  # the key check, the upload, refused
        assert second.billing()["tasks"] == 0


class TestIsReferenceRefusal:
    @pytest.mark.parametrize(
        ("code", "parameter"),
        [
            ("invalidReferenceImages", "inputs.referenceImages"),
            ("invalidReferenceImages", None),
            ("referenceImageNotFound", None),
            ("imageNotFound", None),
            ("invalidParameter", "referenceImages[0]"),
        ],
    )
    def test_refusals_naming_the_references(self, code: str, parameter: str | None) -> None:
        """Codes and parameters that say the references were refused."""
        assert is_reference_refusal(PermanentProviderError(message="no", code=code, parameter=parameter))

    def test_other_refusals(self) -> None:
        """Another parameter, or a transient error over the references (retried as any transient one)."""
        assert not is_reference_refusal(PermanentProviderError(message="no", code="invalidWidth"))
        transient = TransientProviderError(message="busy", code="timeout", parameter="inputs.referenceImages")
        assert not is_reference_refusal(transient)
