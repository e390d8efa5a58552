"""`pipeline plan` and model lifecycle: what a retired model's rows cost on its replacement, why rows are
"changed" after a switch, and rows an earlier model generated counting as done when the job says so."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from helpers.manifest_jobs import image, load, write_job
from rich.console import Console

from pipeline.cli import main
from pipeline.cli._output import err_console
from pipeline.config.jobspec import JobSpec
from pipeline.config.profiles import load_model_profile
from pipeline.output.plan.build import Plan, build_plan
from pipeline.output.plan.costs import on_replacement
from pipeline.output.plan.format import plan_json, render_plan
from pipeline.rows import ImageRequest

SHUTDOWN = dt.date(2026, 12, 1)  # openai:1@2's shutdown date
MINI = '[defaults]\nmodel = "openai:1@2"\n'
CATALOG = "id,prompt,quality,reference_images\n" + "".join(
    f"sku-{i},product photo {i} on white,{q},{ref}\n"
    for i, (q, ref) in enumerate([("", ""), ("", ""), ("high", ""), ("", "refs/shoe.png")])
)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "500")
    err_console.cache_clear()
    yield
    err_console.cache_clear()


def shown(plan: Plan) -> str:
    """The plan as a person sees it."""
    console = Console(width=500, record=True, force_terminal=False)
    console.print(render_plan(plan), soft_wrap=True)
    return console.export_text()


def gpt_image_2(quality: str) -> Decimal:
    """The replacement's estimate for one 1024x1024 image, from its profile (token-billed)."""
    price = load_model_profile("openai:gpt-image@2").price.table[quality]
    assert isinstance(price, Decimal)
    return price


class TestLifecycle:
    def test_a_retired_model_shows_what_its_rows_cost_on_the_replacement(self, tmp_path: Path) -> None:
        """openai:1@2 on its shutdown day: retired; on gpt-image@2 a medium image costs 0.053."""
        spec = load(tmp_path, "id,prompt,quality\na,p,\nb,q,\nc,r,high\n", spec=MINI)
        summary = plan_json(build_plan(spec, SHUTDOWN))
        assert gpt_image_2("medium") == Decimal("0.053")
        assert summary["models"] == [
            {
                "id": "openai:1@2",
                "name": "GPT Image 1 Mini",
                "status": "retired",
                "shutdown_date": "2026-12-01",
                "replacement": "openai:gpt-image@2",
                "rows": 3,
                "estimate_usd": float(Decimal("0.011") * 2 + Decimal("0.036")),
                "replacement_estimate_usd": float(gpt_image_2("medium") * 2 + gpt_image_2("high")),
            }
        ]

    def test_retired_is_flagged_with_how_to_switch(self, tmp_path: Path) -> None:
        spec = load(tmp_path, "id,prompt\na,p\nb,q\n", spec=MINI)
        text = shown(build_plan(spec, SHUTDOWN))
        assert "RETIRED on 2026-12-01" in text
        assert "$0.1060 on openai:gpt-image@2" in text
        assert 'set model = "openai:gpt-image@2" under [defaults]' in text

    def test_a_retiring_model_says_when(self, tmp_path: Path) -> None:
        """A week before shutdown: retiring, with the date and days left, and the replacement's cost."""
        spec = load(tmp_path, "id,prompt\na,p\n", spec=MINI)
        plan = build_plan(spec, dt.date(2026, 11, 23))
        (line,) = plan_json(plan)["models"]
        assert (line["status"], line["replacement_estimate_usd"]) == ("retiring", 0.053)
        assert "retiring: shuts down on 2026-12-01, in 8 days" in shown(plan)

    def test_a_spec_without_a_model_plans_on_a_live_one(self, tmp_path: Path) -> None:
        """No model in [defaults]: gpt-image@2, live, with nothing to replace it."""
        plan = build_plan(load(tmp_path, "id,prompt\na,p\n"), SHUTDOWN)
        (line,) = plan_json(plan)["models"]
        assert (line["id"], line["status"], line["replacement"]) == ("openai:gpt-image@2", "live", None)
        assert line["replacement_estimate_usd"] is None
        assert plan.estimate_usd == gpt_image_2("medium")
        assert plan.warnings == []


class TestReplacementRequest:
    def test_same_size_and_quality_when_the_replacement_takes_them(self) -> None:
        """1@2 at 1536x1024, high, opaque -> gpt-image@2 at 1536x1024, high; it takes no background."""
        old = ImageRequest("openai:1@2", "p", 1536, 1024, "high", "opaque", "JPG", 2)
        new = on_replacement(old, load_model_profile("openai:gpt-image@2"))
        assert (new.model, new.size, new.quality, new.background) == (
            "openai:gpt-image@2",
            "1536x1024",
            "high",
            "",
        )
        assert new.number_results == 2

    def test_else_the_replacement_defaults(self) -> None:
        """A size or option the target does not take becomes the target's default (or goes)."""
        old = ImageRequest(
            "openai:gpt-image@2", "p", 2048, 1024, "", "", "PNG", 1, options=(("moderation", "low"),)
        )
        new = on_replacement(old, load_model_profile("openai:1@2"))
        assert (new.size, new.quality, new.background, new.options) == ("1024x1024", "medium", "opaque", ())


def finished_catalog(folder: Path, capsys: pytest.CaptureFixture[str]) -> JobSpec:
    """A catalog of 4 rows (one with a local reference image) generated on openai:1@2 by a real run
    on the embedded sandbox; returns the job with its model switched to openai:gpt-image@2."""
    image(folder / "refs" / "shoe.png")
    job = write_job(folder, CATALOG, spec=MINI)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(job), "--quiet"])
    assert exited.value.code == 0
    capsys.readouterr()
    return switch(folder)


def switch(folder: Path, *, keep: bool = False, manifest: str = CATALOG) -> JobSpec:
    spec = '[defaults]\nmodel = "openai:gpt-image@2"\n'
    return load(folder, manifest, spec=spec + ("[resume]\nkeep_earlier_models = true\n" if keep else ""))


class TestSwitchingAFinishedCatalog:
    def test_every_row_is_changed_by_the_model(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """By default a switched catalog is new work: plan says why, and what the flag would save."""
        spec = finished_catalog(tmp_path, capsys)
        plan = build_plan(spec, SHUTDOWN)
        summary = plan_json(plan)
        assert (plan.rows.changed, plan.rows.done, plan.rows.done_earlier_model) == (4, 0, 0)
        assert summary["changed_fields"] == {"model": 4, "background": 4}  # gpt-image@2 takes no background
        assert summary["model_changes"] == [{"from": "openai:1@2", "to": "openai:gpt-image@2", "rows": 4}]
        assert plan.estimate_usd == gpt_image_2("medium") * 3 + gpt_image_2("high")
        assert summary["earlier_model"] == {"rows": 4, "usd": 0.37, "counted_done": False}
        text = shown(plan)
        assert "changed   4  model 4 (openai:1@2 -> openai:gpt-image@2), background 4" in text
        assert "keep_earlier_models = true under [resume] in the job spec counts them as done" in text

    def test_rows_an_earlier_model_generated_count_as_done(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """keep_earlier_models = true: nothing to send, nothing to pay."""
        finished_catalog(tmp_path, capsys)
        plan = build_plan(switch(tmp_path, keep=True), SHUTDOWN)
        assert (plan.rows.done, plan.rows.done_earlier_model, plan.rows.changed) == (4, 4, 0)
        assert (plan.estimate_usd, plan.cost) == (Decimal(0), [])
        assert "of which 4 generated by an earlier model" in shown(plan)

    def test_a_moved_reference_file_is_the_same_reference(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """References compare by content, as fingerprints do: a renamed file changes nothing."""
        finished_catalog(tmp_path, capsys)
        (tmp_path / "refs" / "shoe.png").rename(tmp_path / "refs" / "shoe-front.png")
        moved = CATALOG.replace("refs/shoe.png", "refs/shoe-front.png")
        plan = build_plan(switch(tmp_path, keep=True, manifest=moved), SHUTDOWN)
        assert (plan.rows.done_earlier_model, plan.rows.changed) == (4, 0)

    def test_an_edited_prompt_or_reference_is_still_new_work(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With the flag, a prompt edit and a reference image edited in place are changed rows."""
        finished_catalog(tmp_path, capsys)
        image(tmp_path / "refs" / "shoe.png", color=(0, 0, 255))
        edited = CATALOG.replace("product photo 1 ", "product photo 1 in a box ")
        plan = build_plan(switch(tmp_path, keep=True, manifest=edited), SHUTDOWN)
        assert (plan.rows.done, plan.rows.done_earlier_model, plan.rows.changed) == (2, 2, 2)
        assert plan.changes.fields == {"model": 2, "prompt": 1, "background": 2}
        assert plan.estimate_usd == gpt_image_2("medium") * 2

    def test_a_reference_edited_in_place_is_reference_content(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Same model, same request text, new pixels: the only change plan can name is the content."""
        finished_catalog(tmp_path, capsys)
        image(tmp_path / "refs" / "shoe.png", color=(0, 0, 255))
        plan = build_plan(load(tmp_path, CATALOG, spec=MINI), dt.date(2026, 11, 1))
        assert (plan.rows.done, plan.rows.changed) == (3, 1)
        assert plan.changes.fields == {"reference content": 1}

    def test_cli_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`pipeline plan --json` carries the models, the changed fields and the earlier-model rows."""
        spec = finished_catalog(tmp_path, capsys)
        with pytest.raises(SystemExit):
            main(["plan", str(spec.spec_path), "--json"])
        summary = json.loads(capsys.readouterr().out)
        assert summary["changed_fields"]["model"] == 4
        assert summary["rows"]["done_earlier_model"] == 0
        assert [m["id"] for m in summary["models"]] == ["openai:gpt-image@2"]
        assert any("keep_earlier_models" in note for note in summary["notes"])


class TestRunAfterASwitch:
    """What `pipeline run` does with a switched catalog: the same answer as plan."""

    def run_json(self, spec: JobSpec, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
        with pytest.raises(SystemExit) as exited:
            main(["run", str(spec.spec_path), "--json"])
        summary: dict[str, object] = json.loads(capsys.readouterr().out)
        assert summary["exit_code"] == exited.value.code
        return summary

    def test_rows_an_earlier_model_generated_are_not_sent_again(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """keep_earlier_models = true: the run sends nothing, spends nothing more and exits 0."""
        finished_catalog(tmp_path, capsys)
        spent_on_mini = self.run_json(load(tmp_path, CATALOG, spec=MINI), capsys)["spent_usd"]
        summary = self.run_json(switch(tmp_path, keep=True), capsys)
        assert summary["exit_code"] == 0
        assert summary["rows"] == {
            "total": 4,
            "rejected": 0,
            "succeeded": 4,
            "failed": 0,
            "pending": 0,
            "in_doubt": 0,
        }
        assert (summary["images"], summary["spent_usd"]) == (4, spent_on_mini)

    def test_without_the_flag_every_row_is_generated_on_the_new_model(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The default: four new images on openai:gpt-image@2, and the spend grows."""
        finished_catalog(tmp_path, capsys)
        spent_on_mini = self.run_json(load(tmp_path, CATALOG, spec=MINI), capsys)["spent_usd"]
        summary = self.run_json(switch(tmp_path), capsys)
        assert summary["exit_code"] == 0
        assert summary["images"] == 8  # 4 on each model
        assert isinstance(spent_on_mini, float) and isinstance(summary["spent_usd"], float)
        assert summary["spent_usd"] > spent_on_mini
