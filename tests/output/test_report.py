"""pipeline.output.report.build: which files, which rows, how they group, and money summed exactly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from helpers.report_data import (
    at,
    failed_event,
    result_row,
    shop_job,
    submitted_event,
    succeeded_event,
    write_ledger,
    write_rejects,
    write_results,
)

from pipeline.errors import UsageError
from pipeline.output.report.build import load_facts, parse_when, resolve_sources, spend_over_time, summarize
from pipeline.output.results.write import write_results as write_table
from pipeline.state import STATE_NAME, LedgerError, Store
from pipeline.state.events import event_from_dict


def report_of(*paths: Path | str, by: tuple[str, ...] = (), **kw: dt.datetime):
    return summarize(load_facts(resolve_sources([str(p) for p in paths]), by, **kw))


class TestSources:
    def test_output_dir_results_file_and_glob_are_the_same_table(self, tmp_path: Path) -> None:
        """A dir, its results.parquet and a glob matching it name one source, reported once."""
        results = shop_job(tmp_path / "shop")
        sources = resolve_sources([str(tmp_path / "shop"), str(results), str(tmp_path / "*")])
        assert [s.results for s in sources] == [results.resolve()]
        assert sources[0].state is not None and sources[0].rejects is not None

    def test_job_spec_points_to_its_output_dir(self, tmp_path: Path) -> None:
        """A job spec is reported from its output_dir."""
        shop_job(tmp_path / "out")
        (tmp_path / "m.csv").write_text("id,prompt\na,x\n")
        spec = tmp_path / "shop.toml"
        spec.write_text('name = "shop"\nmanifest = "m.csv"\noutput_dir = "out"\n')
        assert report_of(spec).total.images == 3

    def test_many_jobs_at_once(self, tmp_path: Path) -> None:
        """A glob over several output dirs sums them all."""
        shop_job(tmp_path / "one")
        shop_job(tmp_path / "two")
        report = report_of(tmp_path / "*", by=("job",))
        assert report.total.spend == Decimal("0.104")
        assert report.total.rows_succeeded == 4

    @pytest.mark.parametrize("path", ["missing-dir", "nothing-*.parquet"])
    def test_missing_path_is_a_clear_error(self, tmp_path: Path, path: str) -> None:
        """A path that does not exist, or a glob matching nothing, names the path."""
        with pytest.raises(UsageError, match=r"missing-dir|nothing-"):
            resolve_sources([str(tmp_path / path)])

    def test_dir_without_results_table(self, tmp_path: Path) -> None:
        """An output dir with no results table says so and suggests rebuilding it."""
        (tmp_path / "empty").mkdir()
        with pytest.raises(UsageError, match="no results table"):
            resolve_sources([str(tmp_path / "empty")])

    def test_not_a_results_table(self, tmp_path: Path) -> None:
        """A Parquet file without the results columns is refused by name."""
        import polars as pl

        bad = tmp_path / "other.parquet"
        pl.DataFrame({"x": [1]}).write_parquet(bad)
        with pytest.raises(UsageError, match="not a results table"):
            report_of(bad)


class TestTotals:
    def test_shop_job_figures(self, tmp_path: Path) -> None:
        """Images, rows, spend (duplicate included), waste, estimate against actual."""
        total = report_of(shop_job(tmp_path / "shop")).total
        assert (total.images, total.rows_succeeded, total.rows_failed, total.rows_rejected) == (3, 2, 1, 1)
        assert total.spend == Decimal("0.052")
        assert total.wasted == Decimal("0.015")
        assert total.actual == Decimal("0.037")
        assert total.estimate == Decimal("0.033")
        assert total.avg_cost_per_image == Decimal("0.017333333")

    def test_money_is_exact_where_floats_drift(self, tmp_path: Path) -> None:
        """1,000 images at $0.011 and 10 at $0.1 sum to exactly $12.00 (a float sum does not)."""
        rows = [result_row(f"r{i}", cost=0.011) for i in range(1000)]
        rows += [result_row(f"t{i}", cost=0.1) for i in range(10)]
        assert sum([0.011] * 1000 + [0.1] * 10) != 12.0
        total = report_of(write_results(tmp_path / "j", rows)).total
        assert total.spend == Decimal("12")
        assert total.images == 1010

    def test_no_state_counts_the_table_alone_and_says_so(self, tmp_path: Path) -> None:
        """Without the job's state the duplicate charge is unknown; a note says waste is the table's."""
        report = report_of(shop_job(tmp_path / "shop", ledger=False))
        assert report.total.spend == Decimal("0.037")
        assert report.total.wasted == 0
        assert any("no job state" in note for note in report.notes)

    def test_multi_image_task_counts_one_row(self, tmp_path: Path) -> None:
        """Two images of one row: 2 images, 1 row succeeded."""
        rows = [result_row("a", index=0), result_row("a", index=1)]
        total = report_of(write_results(tmp_path / "j", rows)).total
        assert (total.images, total.rows_succeeded) == (2, 1)


class TestStateCharges:
    def test_a_table_behind_its_state_counts_the_later_charges(self, tmp_path: Path) -> None:
        """A table written by the pipeline knows which event it shows: a success recorded after it is
        spend (unlisted, with a note), attributed from its request; written again, it is a line."""
        out = tmp_path / "j"
        first = [submitted_event("a", "task-a", at(20)), succeeded_event("a", "task-a", [0.011], at(20))]
        later = [
            submitted_event("z", "task-z", at(21), quality="high", width=1536),
            succeeded_event("z", "task-z", [0.052], at(21)),
        ]
        with Store.open(out / STATE_NAME, job="shop", durability="never") as store:
            store.record_many(event_from_dict(e) for e in first)
            write_table(out, "shop")
            assert report_of(out).total.unlisted == 0
            store.record_many(event_from_dict(e) for e in later)
        report = report_of(out, by=("quality",))
        assert (report.total.spend, report.total.unlisted) == (Decimal("0.063"), Decimal("0.052"))
        assert {g.keys["quality"]: g.stats.spend for g in report.groups}["high"] == Decimal("0.052")
        assert any("not in results.parquet" in note for note in report.notes)
        write_table(out, "shop")
        total = report_of(out).total
        assert (total.spend, total.unlisted, total.images) == (Decimal("0.063"), 0, 2)


class TestLedgerCharges:
    def test_duplicate_success_is_waste_in_its_own_run_and_day(self, tmp_path: Path) -> None:
        """The second success of a row counts as wasted, in the run and day it was charged."""
        shop_job(tmp_path / "shop")
        report = report_of(tmp_path / "shop", by=("run", "day"))
        wasted = {(g.keys["run"], g.keys["day"]): g.stats.wasted for g in report.groups}
        assert wasted[("run2", "2026-11-21")] == Decimal("0.015")
        assert sum(wasted.values()) == Decimal("0.015")

    def test_charges_missing_from_a_stale_table_count_in_spend_not_waste(self, tmp_path: Path) -> None:
        """A success the table does not have yet is spend (with a note), attributed from its request."""
        out = tmp_path / "j"
        write_results(out, [result_row("a", cost=0.011)])
        write_ledger(
            out,
            [
                succeeded_event("a", "task-a-s", [0.011], at(20)),
                submitted_event("z", "task-z", at(20), quality="high", width=1536),
                succeeded_event("z", "task-z", [0.052], at(20, 13)),
            ],
        )
        report = report_of(out, by=("quality", "size"))
        assert report.total.spend == Decimal("0.063")
        assert report.total.wasted == 0
        assert report.total.unlisted == Decimal("0.052")
        keys = {(g.keys["quality"], g.keys["size"]): g.stats.spend for g in report.groups}
        assert keys[("high", "1536x1024")] == Decimal("0.052")
        assert any("not in results.parquet" in note for note in report.notes)

    def test_failed_event_without_charge_adds_nothing(self, tmp_path: Path) -> None:
        """A failed attempt the ledger shows no charge for costs nothing."""
        out = tmp_path / "j"
        write_results(out, [result_row("a")])
        write_ledger(
            out, [succeeded_event("a", "task-a-s", [0.011], at(20)), failed_event("a", "t0", at(20))]
        )
        assert report_of(out).total.spend == Decimal("0.011")

    def test_torn_last_line_is_ignored(self, tmp_path: Path) -> None:
        """A crash mid-write leaves a torn last line; the report reads the rest."""
        shop_job(tmp_path / "shop")
        ledger = tmp_path / "shop" / "ledger.jsonl"
        ledger.write_text(ledger.read_text() + '{"event":"succeeded","id":"b","fin')
        assert report_of(tmp_path / "shop").total.wasted == Decimal("0.015")

    def test_bad_middle_line_names_the_line(self, tmp_path: Path) -> None:
        """An invalid line that is not the last is an error naming the file and line number."""
        shop_job(tmp_path / "shop")
        ledger = tmp_path / "shop" / "ledger.jsonl"
        lines = ledger.read_text().splitlines()
        lines.insert(2, "{not json")
        ledger.write_text("\n".join(lines) + "\n")
        with pytest.raises(LedgerError, match=r"ledger.jsonl: line 3"):
            report_of(tmp_path / "shop")

    def test_images_without_cost_use_the_event_total(self, tmp_path: Path) -> None:
        """When no image carries a cost, the event's cost_usd is the charge."""
        out = tmp_path / "j"
        write_results(out, [result_row("a")])
        event = succeeded_event("a", "dup", [None], at(20))
        event["cost_usd"] = 0.011
        write_ledger(out, [succeeded_event("a", "task-a-s", [0.011], at(20)), event])
        assert report_of(out).total.wasted == Decimal("0.011")


class TestGrouping:
    def test_by_passthrough_column(self, tmp_path: Path) -> None:
        """--by category groups on a manifest column carried through."""
        report = report_of(shop_job(tmp_path / "shop"), by=("category",))
        spend = {g.keys["category"]: g.stats.spend for g in report.groups}
        assert spend == {"hats": Decimal("0.030"), "shoes": Decimal("0.022"), None: 0}

    def test_rejects_fall_in_the_job_group(self, tmp_path: Path) -> None:
        """Rejected rows have only a job; grouped by job they land in it."""
        report = report_of(shop_job(tmp_path / "shop"), by=("job",))
        assert [(g.keys["job"], g.stats.rows_rejected) for g in report.groups] == [("shop", 1)]

    @pytest.mark.parametrize(
        ("key", "expected"),
        [
            ("day", {"2026-11-20", "2026-11-21"}),
            ("week", {"2026-W47"}),
            ("month", {"2026-11"}),
            ("run", {"run1", "run2"}),
            ("model", {"openai:1@2"}),
            ("quality", {"medium"}),
            ("size", {"1024x1024", "1536x1024"}),
        ],
    )
    def test_derived_keys(self, tmp_path: Path, key: str, expected: set[str]) -> None:
        """day, week, month, run, model, quality and size group as documented."""
        (tmp_path / "shop").mkdir()
        write_results(
            tmp_path / "shop",
            [
                result_row("a", when=at(20, 9)),
                result_row("b", width=1536, when=at(21, 10), run_id="run2"),
            ],
        )
        report = report_of(tmp_path / "shop", by=(key,))
        assert {g.keys[key] for g in report.groups} == expected

    def test_unknown_key_lists_the_choices(self, tmp_path: Path) -> None:
        """--by nosuch fails naming the available columns and keys."""
        with pytest.raises(UsageError, match=r"--by nosuch.*category.*week"):
            report_of(shop_job(tmp_path / "shop"), by=("nosuch",))

    def test_real_column_wins_over_derived_key(self, tmp_path: Path) -> None:
        """A passthrough column named size (a clothing size) is grouped as is."""
        write_results(tmp_path / "j", [result_row("a", size="M"), result_row("b", size="XL")])
        assert {g.keys["size"] for g in report_of(tmp_path / "j", by=("size",)).groups} == {"M", "XL"}

    def test_total_equals_sum_of_groups(self, tmp_path: Path) -> None:
        """Every charge lands in exactly one group."""
        report = report_of(shop_job(tmp_path / "shop"), by=("category", "run"))
        assert sum((g.stats.spend for g in report.groups), Decimal(0)) == report.total.spend
        assert sum(g.stats.images for g in report.groups) == report.total.images


class TestTimeWindow:
    def test_since_and_until(self, tmp_path: Path) -> None:
        """--since/--until keep charges completed in the window; a bare --until date includes that day."""
        shop_job(tmp_path / "shop")
        day20 = report_of(tmp_path / "shop", until=parse_when("2026-11-20", end=True))
        assert (day20.total.spend, day20.total.rows_rejected) == (Decimal("0.022"), 0)
        day21 = report_of(tmp_path / "shop", since=parse_when("2026-11-21"))
        assert day21.total.spend == Decimal("0.030")

    def test_parse_when(self) -> None:
        """Dates and ISO datetimes are UTC; a bad value names itself."""
        assert parse_when("2026-11-21T10:00:00+01:00") == dt.datetime(2026, 11, 21, 9, tzinfo=dt.UTC)
        with pytest.raises(UsageError, match="yesterday"):
            parse_when("yesterday")


class TestChartsData:
    def test_spend_over_time_fills_empty_buckets(self, tmp_path: Path) -> None:
        """Hourly buckets over two days, empty hours present as zero, totals preserved."""
        facts = load_facts(resolve_sources([str(shop_job(tmp_path / "shop"))]))
        points = spend_over_time(facts)
        assert len(points) == 27
        assert sum((s for _, s, _ in points), Decimal(0)) == Decimal("0.052")
        assert sum((w for _, _, w in points), Decimal(0)) == Decimal("0.015")

    def test_rejects_file_alone_is_optional(self, tmp_path: Path) -> None:
        """A job without rejects.parquet reports 0 rejected."""
        write_results(tmp_path / "j", [result_row("a")])
        assert report_of(tmp_path / "j").total.rows_rejected == 0
        write_rejects(tmp_path / "j", [(2, None, "empty prompt")])
        assert report_of(tmp_path / "j").total.rows_rejected == 1
        assert json.dumps(str(report_of(tmp_path / "j").total.spend)) == '"0.011000000"'


class TestLedgerFormats:
    def _compact(self, out: Path, newline: str = "\n", blank: bool = False) -> None:
        head = {"event": "job", "version": 1, "namespace": "ns", "job": "shop", "at": "2026-11-19T12:00:00Z"}
        events = [
            head,
            succeeded_event("a", "task-a-s", [0.011], at(20)),
            submitted_event("a", "dup", at(20)),
            succeeded_event("a", "dup", [0.011], at(20)),
        ]
        lines = [json.dumps(e, separators=(",", ":")) for e in events]
        if blank:
            lines.insert(2, "")
        (out / "ledger.jsonl").write_text(newline.join(lines) + newline)

    @pytest.mark.parametrize(("newline", "blank"), [("\n", False), ("\r\n", False), ("\n", True)])
    def test_compact_crlf_and_blank_lines(self, tmp_path: Path, newline: str, blank: bool) -> None:
        """A 0.1 ledger in compact JSON, with CRLF line ends or a blank line, imports the same."""
        write_results(tmp_path / "j", [result_row("a")])
        self._compact(tmp_path / "j", newline, blank)
        total = report_of(tmp_path / "j").total
        assert (total.spend, total.wasted) == (Decimal("0.022"), Decimal("0.011"))

    def test_the_01_ledger_is_imported_once_and_kept_as_it_was(self, tmp_path: Path) -> None:
        """The first report imports the ledger into state.db; the ledger's bytes do not change."""
        shop_job(tmp_path / "shop")
        ledger = tmp_path / "shop" / "ledger.jsonl"
        before = ledger.read_bytes()
        assert report_of(tmp_path / "shop").total.wasted == Decimal("0.015")
        assert (tmp_path / "shop" / "state.db").exists() and ledger.read_bytes() == before
        ledger.write_text("")  # the store answers from now on: the ledger is never read again
        assert report_of(tmp_path / "shop").total.wasted == Decimal("0.015")


def test_csv_copy_beside_the_parquet_is_not_counted_twice(tmp_path: Path) -> None:
    """results.csv and results.parquet of one output dir (a glob matching both) are one table."""
    import polars as pl

    results = shop_job(tmp_path / "shop")
    pl.read_parquet(results).write_csv(results.with_suffix(".csv"))
    sources = resolve_sources([str(tmp_path / "shop" / "results.*")])
    assert [s.results.name for s in sources] == ["results.parquet"]
    assert report_of(results.with_suffix(".csv")).total.spend == Decimal("0.052")


def test_images_without_billed_cost_are_flagged(tmp_path: Path) -> None:
    """Rows whose cost is the estimate (provider sent none) are counted and noted."""
    row = result_row("a", cost=0.011) | {"cost_source": "estimate"}
    report = report_of(write_results(tmp_path / "j", [row, result_row("b")]))
    assert report.total.estimated_images == 1
    assert any("without a billed cost" in note for note in report.notes)


@pytest.mark.parametrize("by", [(), ("category",), ("category", "run"), ("day",)])
def test_rows_counted_in_several_passes_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by: tuple[str, ...]
) -> None:
    """A big report counts distinct rows in passes over shares of them: the figures do not change."""
    job = shop_job(tmp_path / "shop")
    rows = [result_row(f"x{i}", index=n, category=f"c{i % 3}") for i in range(9) for n in range(2)]
    write_results(tmp_path / "more", rows)
    whole = report_of(job, tmp_path / "more", by=by)
    monkeypatch.setattr("pipeline.output.report.build._PASS_FACTS", 2)
    passes = report_of(job, tmp_path / "more", by=by)
    assert passes.total == whole.total and passes.groups == whole.groups
    assert whole.total.rows_succeeded > 9
