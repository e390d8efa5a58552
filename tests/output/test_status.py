"""`pipeline status`: what the job's state says now, from running totals and the manifest's summary."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.manifest_jobs import failed, load, read_all, submitted, succeeded, write_job

import pipeline.manifest.reader
from pipeline.cli import main
from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.output.plan.build import build_plan
from pipeline.output.status import read_state, status_payload
from pipeline.state import STATE_NAME, Store
from pipeline.state.events import event_from_dict

MINI = '[defaults]\nmodel = "openai:1@2"\n'
CSV = "id,prompt\na,p1\nb,p2\nc,p3\nd,p4\ne,\n"  # e is rejected: empty prompt


def record(out: Path, events: list[dict[str, Any]]) -> None:
    with Store.open(out / STATE_NAME, job="t", durability="never") as store:
        store.record_many(event_from_dict(e) for e in events)


def status(capsys: pytest.CaptureFixture[str], job: Path, *args: str) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exited:
        main(["status", str(job), "--json", *args])
    assert exited.value.code == 0
    payload: dict[str, Any] = json.loads(capsys.readouterr().out)
    return payload


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """a done, b failed for good, c in doubt, d never sent, e rejected; plus an old fingerprint of a."""
    spec = load(tmp_path, CSV, spec=MINI)
    fp = {row.id: row.fingerprint for row in read_all(spec).rows}
    record(
        tmp_path / "out",
        [
            submitted("a", "0" * 64), succeeded("a", "0" * 64),  # a's prompt before an edit
            submitted("a", fp["a"]), succeeded("a", fp["a"]),
            submitted("b", fp["b"]), failed("b", fp["b"], retryable=False),
            submitted("c", fp["c"]),
        ],
    )  # fmt: skip
    return spec.spec_path


class TestStatus:
    def test_rows_of_the_manifest_by_state(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The documented keys; an old fingerprint is not counted; rows never sent are pending."""
        payload = status(capsys, job)
        assert payload["rows"] == {
            "total": 5, "rejected": 1, "succeeded": 1, "failed": 1, "pending": 1, "in_doubt": 1
        }  # fmt: skip
        assert (payload["images"], payload["spent_usd"], payload["exit_code"]) == (2, 0.022, 0)

    def test_after_a_plan_status_does_not_read_the_manifest(
        self, job: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The plan records the manifest's summary; status then answers from the state alone."""
        first = status(capsys, job)
        build_plan(load_spec(job), dt.date(2026, 11, 23))

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("status read the manifest")

        monkeypatch.setattr(pipeline.manifest.reader, "open_manifest", refuse)
        assert status(capsys, job) == first

    def test_an_edited_manifest_is_read_again(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """After an edit (a new row), status re-reads the manifest: the new row is pending."""
        status(capsys, job)
        write_job(job.parent, CSV + "f,p6\n", spec=MINI)
        rows = status(capsys, job)["rows"]
        assert (rows["total"], rows["pending"]) == (6, 2)

    def test_verify_reads_the_manifest_whatever_was_recorded(
        self, job: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--verify always re-reads (a reference file edited in place changes no signature)."""
        status(capsys, job)
        calls: list[int] = []
        real = pipeline.manifest.reader.open_manifest

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(pipeline.manifest.reader, "open_manifest", counting)
        status(capsys, job, "--verify")
        assert calls == [1]

    def test_a_job_that_never_ran(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No state yet: every accepted row is pending, and status creates no state."""
        spec = load(tmp_path, CSV, spec=MINI)
        payload = status(capsys, spec.spec_path)
        assert payload["rows"] == {
            "total": 5, "rejected": 1, "succeeded": 0, "failed": 0, "pending": 4, "in_doubt": 0
        }  # fmt: skip
        assert not (tmp_path / "out" / STATE_NAME).exists()

    def test_text_line(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --json: one line on stdout with the counts and the spend."""
        with pytest.raises(SystemExit):
            main(["status", str(job)])
        out = capsys.readouterr().out
        assert (
            "t: 5 rows: 1 done, 1 failed, 1 in doubt, 1 pending, 1 rejected; 2 images, spent $0.0220" in out
        )

    def test_the_run_and_status_share_one_payload(self, job: Path) -> None:
        """``status_payload`` is what `run --json` reports as job totals: no manifest read is forced."""
        spec = load_spec(job)
        store = read_state(spec.out_dir)
        assert store is not None
        with store:
            state_only = status_payload(store, spec, verify=False)
        assert state_only["rows"]["succeeded"] == 2  # without the manifest: every fingerprint seen


def load_spec(job: Path) -> JobSpec:
    return load_job_spec(job)
