"""`pipeline plan`: counts against the job's state, cost and time estimates, warnings, rejects; sends nothing.

States here come from 0.1 ledgers (``write_ledger``): the plan imports them into the store on first use.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from helpers.manifest_jobs import failed, load, read_all, submitted, succeeded, write_ledger
from helpers.paths import ROOT

from pipeline.cli import main
from pipeline.cli._output import err_console
from pipeline.config.jobspec import Limits, load_job_spec
from pipeline.config.profiles import load_model_profile
from pipeline.errors import StoreError
from pipeline.output.plan.build import build_plan, classify, time_estimate_s
from pipeline.output.plan.format import plan_json

REPO_JOBS = ROOT / "jobs"
TODAY = dt.date(2026, 11, 23)
MINI = '[defaults]\nmodel = "openai:1@2"\n'  # 0.1's default model: its list prices are in these tests


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """A copy of the repo's jobs/ folder, so plans write under tmp_path/output."""
    return Path(shutil.copytree(REPO_JOBS, tmp_path / "jobs"))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "500")
    err_console.cache_clear()
    yield
    err_console.cache_clear()


def demo_estimate(jobs: Path) -> Decimal:
    """What a run of the demo reserves, row by row, from each row's model profile."""
    rows = read_all(load_job_spec(jobs / "demo.toml")).rows
    return sum((load_model_profile(r.request.model).estimate_usd(r.request) for r in rows), Decimal(0))


def plan_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["plan", *argv])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


class TestExamples:
    def test_demo_plan_json(self, jobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo plans 12 new rows, 13 images, what a run's budget reserves; stdout is one JSON object."""
        code, out, _ = plan_cli(capsys, str(jobs / "demo.toml"), "--json")
        assert code == 0
        summary = json.loads(out)
        assert out.count("\n") == 1
        assert summary["rows"] == {
            "total": 12, "rejected": 0, "new": 12, "changed": 0, "done": 0, "failed": 0, "in_doubt": 0,
            "done_earlier_model": 0,
        }  # fmt: skip
        assert summary["images"] == 13
        demo = demo_estimate(jobs)
        assert Decimal(str(summary["estimate_usd"])) == demo
        assert sum(Decimal(str(line["usd"])) for line in summary["estimate"]) == demo
        assert summary["time_estimate_s"] > 0
        assert isinstance(summary["warnings"], list)
        assert not (jobs.parent / "output" / "demo" / "ledger.jsonl").exists()
        assert not (jobs.parent / "output" / "demo" / "state.db").exists()

    def test_demo_plan_text(self, jobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The human plan shows the counts, the cost table with its total and the time estimate."""
        code, out, err = plan_cli(capsys, str(jobs / "demo.toml"))
        assert code == 0
        total = f"${demo_estimate(jobs):,.4f}"
        for text in ("Plan for job demo", "new", "Estimated cost", "1024x1536", total, "Estimated time"):
            assert text in out
        assert "error" not in err

    def test_rejects_example_lists_one_reject_per_reason(
        self, jobs: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit 1; the first rejects on screen with their reasons; all of them in rejects.parquet."""
        code, out, _ = plan_cli(capsys, str(jobs / "rejects.toml"))
        assert code == 1
        assert "row 3  id bad-size: size 2048x512 is not allowed" in out
        path = jobs.parent / "output" / "rejects" / "rejects.parquet"
        assert f"first 10 of 11; the full list is in {path}" in out
        rejects = pl.read_parquet(path)
        assert rejects.columns == ["row_number", "id", "reason"]
        assert rejects["id"].to_list() == [
            "bad-size", "bad-quality", "bad-background", "bad-format", "too-many-refs", "missing-file",
            "empty-prompt", "long-prompt", "ok-1", "unknown-set", "bad-number",
        ]  # fmt: skip
        assert rejects["row_number"].to_list() == list(range(3, 14))

    def test_a_clean_plan_empties_an_old_rejects_file(self, tmp_path: Path) -> None:
        """rejects.parquet always describes the current manifest."""
        spec = load(tmp_path, "id,prompt\na,p\nb,\n")
        build_plan(spec, TODAY)
        assert pl.read_parquet(spec.out_dir / "rejects.parquet").height == 1
        spec = load(tmp_path, "id,prompt\na,p\nb,q\n")
        build_plan(spec, TODAY)
        assert pl.read_parquet(spec.out_dir / "rejects.parquet").height == 0


class TestState:
    def test_rows_are_new_changed_or_done_by_id_and_fingerprint(self, tmp_path: Path) -> None:
        """done: same (id, fingerprint) succeeded; changed: id seen under another fingerprint; else new."""
        csv = "id,prompt\na,p1\nb,p2 edited\nc,p3\nd,p4\ne,p5\n"
        rows = {r.id: r.fingerprint for r in read_all(load(tmp_path, csv, spec=MINI)).rows}
        old_b = "0" * 64
        write_ledger(
            tmp_path / "out",
            [
                submitted("a", rows["a"]), succeeded("a", rows["a"]),
                submitted("b", old_b), succeeded("b", old_b),
                submitted("c", rows["c"]), failed("c", rows["c"], retryable=False),
                submitted("d", rows["d"]),
                submitted("gone", "1" * 64), succeeded("gone", "1" * 64),
            ],
        )  # fmt: skip
        plan = build_plan(load(tmp_path, csv, spec=MINI), TODAY)
        counts = plan.rows
        assert (counts.total, counts.done, counts.changed, counts.new) == (5, 1, 1, 3)
        assert (counts.failed, counts.in_doubt) == (1, 1)
        assert plan.state == tmp_path / "out" / "state.db"
        assert plan.estimate_usd == Decimal("0.011") * 4  # new + changed rows only
        assert plan.spent_usd == Decimal("0.033")  # a, the old b and a row no longer in the manifest

    def test_a_plan_says_the_same_whatever_its_batches(self, tmp_path: Path) -> None:
        """Rows are classified, priced and explained batch by batch: batches of two rows give the plan
        that one batch gives."""
        csv = "id,prompt,quality\na,p1,\nb,p2 edited,\nc,p3,\nd,p4,high\ne,p5,\nf,,\ng,p7,low\na,p8,\n"
        rows = {r.id: r.fingerprint for r in read_all(load(tmp_path, csv, spec=MINI)).rows}
        old_b, old_g = "0" * 64, "2" * 64
        write_ledger(
            tmp_path / "out",
            [
                submitted("a", rows["a"]), succeeded("a", rows["a"]),
                submitted("b", old_b), succeeded("b", old_b),
                submitted("c", rows["c"]), failed("c", rows["c"], retryable=False),
                submitted("d", rows["d"]), submitted("g", old_g),
            ],
        )  # fmt: skip
        spec = load(tmp_path, csv, spec=MINI)
        whole = plan_json(build_plan(spec, TODAY))
        assert whole["rows"]["changed"] == 2 and whole["rows"]["rejected"] == 2
        assert plan_json(build_plan(spec, TODAY, batch_size=2)) == whole

    def test_a_changed_row_whose_request_cannot_be_read_stops_the_plan(self, tmp_path: Path) -> None:
        """The changed rows' history is read in the background; its error is the plan's (no hang)."""
        csv = "id,prompt\na,p1\nb,p2 edited\n"
        write_ledger(tmp_path / "out", [submitted("b", "0" * 64), succeeded("b", "0" * 64)])
        spec = load(tmp_path, csv, spec=MINI)
        assert build_plan(spec, TODAY).rows.changed == 1  # imports the ledger
        with sqlite3.connect(tmp_path / "out" / "state.db") as conn:
            conn.execute("UPDATE rows SET last_submit_seq = 1 WHERE id = 'b'")  # seq 1: the job event
        conn.close()
        with pytest.raises(StoreError, match="'submitted' event was expected"):
            build_plan(spec, TODAY, batch_size=1)

    def test_classify_counts_and_places_a_batch(self) -> None:
        """The rows the store says are unfinished are new or changed; every other row is done."""
        found = classify(6, [(0, None, False), (2, None, True), (3, "failed", True), (5, "in_doubt", True)])
        assert (found.new, found.changed) == ([0, 3, 5], [2])
        assert +found.counts == {
            ("new", None): 1, ("new", "failed"): 1, ("new", "in_doubt"): 1, ("changed", None): 1,
            ("done", "succeeded"): 2,
        }  # fmt: skip

    def test_no_state_means_everything_is_new(self, tmp_path: Path) -> None:
        """A job that never ran: every row is new, and planning creates no state."""
        plan = build_plan(load(tmp_path, "id,prompt\na,p\nb,q\n"), TODAY)
        assert (plan.rows.new, plan.rows.done, plan.state) == (2, 0, None)
        assert not (tmp_path / "out" / "state.db").exists()

    def test_after_a_run_everything_is_done_and_an_edit_is_changed(
        self, jobs: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A real run of the demo on the embedded sandbox, then plan: 12 done; edit a prompt: 1 changed."""
        with pytest.raises(SystemExit) as exited:
            main(["run", str(jobs / "demo.toml"), "--quiet"])
        assert exited.value.code == 0
        capsys.readouterr()
        _, out, _ = plan_cli(capsys, str(jobs / "demo.toml"), "--json")
        assert json.loads(out)["rows"]["done"] == 12
        manifest = jobs / "demo" / "catalog.csv"
        manifest.write_text(manifest.read_text().replace("soft shadow", "long soft shadow"))
        _, out, _ = plan_cli(capsys, str(jobs / "demo.toml"), "--json")
        summary = json.loads(out)
        assert (summary["rows"]["done"], summary["rows"]["changed"]) == (11, 1)
        assert summary["changed_fields"] == {"prompt": 1}
        edited = next(
            r for r in read_all(load_job_spec(jobs / "demo.toml")).rows if "long soft" in r.request.prompt
        )
        assert Decimal(str(summary["estimate_usd"])) == load_model_profile(edited.request.model).estimate_usd(
            edited.request
        )


class TestEstimates:
    def test_cost_is_grouped_by_model_quality_and_size(self, tmp_path: Path) -> None:
        """Each group is priced from its model profile, times the number of results."""
        spec = load(
            tmp_path,
            "id,prompt,model,quality,width,height,number_results\n"
            "a,p,,,,,\nb,p,,,,,3\nc,p,openai:1@1,high,1536,1024,\nd,p,,low,1024,1536,2\n",
            spec=MINI,
        )
        plan = build_plan(spec, TODAY)
        lines = {(c.model, c.quality, c.size): (c.rows, c.images, c.usd) for c in plan.cost}
        assert lines == {
            ("openai:1@2", "medium", "1024x1024"): (2, 4, Decimal("0.044")),
            ("openai:1@1", "high", "1536x1024"): (1, 1, Decimal("0.25")),
            ("openai:1@2", "low", "1024x1536"): (1, 2, Decimal("0.012")),
        }
        assert plan.estimate_usd == Decimal("0.306")
        assert plan.images == 7

    def test_every_price_option_and_reference_is_priced(self, tmp_path: Path) -> None:
        """Ideogram by rendering speed (a "variant" line), FLUX.2 per reference and per megapixel: the plan's
        lines add up to what a run's budget reserves row by row."""
        spec = load(
            tmp_path,
            "id,prompt,model,rendering_speed,reference_images,width,height\n"
            "a,p,ideogram:4@0,TURBO,,,\nb,p,ideogram:4@0,QUALITY,,,\nc,p,ideogram:4@0,,,,\n"
            "d,p,bfl:5@1,,https://x/1.png|https://x/2.png,,\ne,p,bfl:5@1,,,,\nf,p,bfl:5@1,,,2048,1024\n",
        )
        plan = build_plan(spec, TODAY)
        lines = {(c.model, c.size, c.variant): (c.rows, c.usd) for c in plan.cost}
        rows = {r.id: r.request for r in read_all(spec).rows}

        def reserved(*ids: str) -> Decimal:
            return sum((load_model_profile(rows[i].model).estimate_usd(rows[i]) for i in ids), Decimal(0))

        assert lines == {
            ("ideogram:4@0", "2048x2048", "rendering_speed TURBO"): (1, reserved("a")),
            ("ideogram:4@0", "2048x2048", "rendering_speed QUALITY"): (1, reserved("b")),
            ("ideogram:4@0", "2048x2048", "rendering_speed DEFAULT"): (1, reserved("c")),
            ("bfl:5@1", "1024x1024", ""): (2, reserved("d", "e")),
            ("bfl:5@1", "2048x1024", ""): (1, reserved("f")),
        }
        assert reserved("d") == reserved("e") + 2 * Decimal("0.015")  # per reference image
        variants = {line["model"]: line.get("variant") for line in plan_json(plan)["estimate"]}
        assert variants["ideogram:4@0"] is not None and variants["bfl:5@1"] is None  # only when it matters

    def test_time_follows_concurrency_latency_and_rate_limits(self, tmp_path: Path) -> None:
        """Rows x typical latency / concurrency, never less than one request, slowed by rate limits."""
        groups = pl.DataFrame(
            {"model": ["openai:1@2"], "quality": ["medium"], "width": [1024], "height": [1024],
             "rows": [160], "images": [320]}
        )  # fmt: skip
        assert time_estimate_s(groups, Limits(concurrency=16)) == pytest.approx(160 * 15 / 16)
        assert time_estimate_s(groups.with_columns(rows=pl.lit(1)), Limits(concurrency=16)) == 15
        assert time_estimate_s(groups, Limits(concurrency=16, requests_per_minute=10)) == 160 * 6
        assert time_estimate_s(groups, Limits(concurrency=16, images_per_minute=32)) == 600

    def test_the_mini_shutdown_is_warned_about(self, tmp_path: Path) -> None:
        """openai:1@2 shuts down on 2026-12-01: warned 8 days before, not 6 months before."""
        spec = load(tmp_path, "id,prompt\na,p\n", spec=MINI)
        (warning,) = build_plan(spec, TODAY).warnings
        assert "shuts down on 2026-12-01, in 8 days" in warning
        assert build_plan(spec, dt.date(2026, 6, 1)).warnings == []
        assert "was shut down" in build_plan(spec, dt.date(2026, 12, 2)).warnings[0]

    def test_no_lifecycle_warning_for_a_model_without_shutdown(self, tmp_path: Path) -> None:
        spec = load(tmp_path, "id,prompt\na,p\n", spec='[defaults]\nmodel = "openai:gpt-image@2"\n')
        assert build_plan(spec, TODAY).warnings == []

    def test_an_estimate_over_budget_is_warned_about(self, tmp_path: Path) -> None:
        spec = load(tmp_path, "id,prompt\na,p\nb,q\n", spec=MINI + "[limits]\nbudget_usd = 0.01\n")
        warnings = build_plan(spec, dt.date(2026, 1, 1)).warnings
        assert warnings == [
            "the estimate ($0.0220) is over budget_usd ($0.01): "
            "the run will stop at the budget with work left (exit 3)"
        ]

    def test_spend_so_far_counts_against_the_budget(self, tmp_path: Path) -> None:
        """budget_usd is for the whole job: what the state says was spent is added to the estimate."""
        write_ledger(tmp_path / "out", [submitted("old", "1" * 64), succeeded("old", "1" * 64)])
        spec = load(tmp_path, "id,prompt\na,p\n", spec=MINI + "[limits]\nbudget_usd = 0.02\n")
        plan = build_plan(spec, dt.date(2026, 1, 1))
        assert plan.spent_usd == Decimal("0.011")
        assert plan.warnings == [
            "the estimate ($0.0110 + $0.0110 already spent) is over budget_usd ($0.02): "
            "the run will stop at the budget with work left (exit 3)"
        ]

    def test_a_torn_last_ledger_line_is_ignored(self, tmp_path: Path) -> None:
        """A 0.1 crash mid-write left a torn last line: the import skips it, the plan reads the rest."""
        ledger = write_ledger(tmp_path / "out", [submitted("a", "1" * 64), succeeded("a", "1" * 64)])
        with ledger.open("a") as f:
            f.write('{"event": "succeeded", "id": "b", "cost_u')
        plan = build_plan(load(tmp_path, "id,prompt\na,p\n"), dt.date(2026, 1, 1))
        assert (plan.rows.changed, plan.spent_usd) == (1, Decimal("0.011"))


class TestCli:
    def test_json_carries_the_required_keys_and_rejects(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json: rows, estimate_usd, warnings, the first rejects and where the rest are."""
        spec = load(tmp_path, "id,prompt,quality\na,p,\nb,p,ultra\n")
        code, out, err = plan_cli(capsys, str(spec.spec_path), "--json")
        summary = json.loads(out)
        assert code == 1
        assert {"rows", "estimate_usd", "warnings"} <= set(summary)
        assert summary["rows"]["rejected"] == 1
        assert summary["rejects"] == [{"row_number": 2, "id": "b", "reason": summary["rejects"][0]["reason"]}]
        assert "quality 'ultra' is not allowed" in summary["rejects"][0]["reason"]
        assert summary["rejects_path"] == str(tmp_path / "out" / "rejects.parquet")
        assert err == ""

    def test_a_missing_api_key_for_a_real_provider_is_a_warning(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Planning a runware job needs no key, but says `run` will."""
        monkeypatch.delenv("RUNWARE_API_KEY", raising=False)
        spec = load(tmp_path, "id,prompt\na,p\n", spec='[provider]\nprofile = "runware"\n')
        _, out, _ = plan_cli(capsys, str(spec.spec_path), "--json")
        assert any("RUNWARE_API_KEY is not set" in w for w in json.loads(out)["warnings"])

    def test_load_job_spec_of_the_demo(self) -> None:
        """The shipped demo spec is valid and reads its manifest relative to itself."""
        spec = load_job_spec(REPO_JOBS / "demo.toml")
        assert spec.manifest == REPO_JOBS / "demo" / "catalog.csv"
        assert (spec.provider.profile, spec.output.download, spec.name) == ("sandbox", True, "demo")
