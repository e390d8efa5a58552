"""The progress line: counts, rate, ETA and money as a user reads them."""

from __future__ import annotations

from decimal import Decimal

from pipeline.run.outcome import Outcome, Stop
from pipeline.run.progress import Tally, format_line


class TestProgressLine:
    def test_rate_eta_and_projection(self) -> None:
        """After 60 s with 30 of 90 rows done: 30 img/min, 2 minutes left, projected spend."""
        now = [0.0]
        tally = Tally(clock=lambda: now[0])
        tally.seen, tally.done, tally.images, tally.manifest_done = 90, 30, 30, True
        tally.spent_usd, tally.mean_estimate_usd = Decimal("0.33"), Decimal("0.011")
        now[0] = 60.0
        line = format_line(tally.snapshot())
        assert line.startswith("30/90 done, 0 failed, 0 in flight, 30 img/min, ETA 2m00s")
        assert "spent $0.330, projected $0.990" in line

    def test_unknown_total_while_reading(self) -> None:
        """While the manifest is still being read the total has a '+' and there is no ETA."""
        tally = Tally(clock=lambda: 1.0)
        tally.seen = 10
        assert format_line(tally.snapshot()).startswith("0/10+ done")
        assert "ETA ?" in format_line(tally.snapshot())


class TestExitCodes:
    def test_codes(self) -> None:
        """0 all done, 1 failures, 3 limit with work left, 5 provider, 130 interrupted."""
        done = Outcome(manifest_done=True)
        done.count("succeeded")
        assert done.exit_code() == 0
        failed = Outcome(manifest_done=True)
        failed.count("failed")
        assert failed.exit_code() == 1
        budget = Outcome(manifest_done=True, stop=Stop.BUDGET)
        budget.count("pending")
        assert budget.exit_code() == 3
        finished_anyway = Outcome(manifest_done=True, stop=Stop.BUDGET)
        finished_anyway.count("succeeded")
        assert finished_anyway.exit_code() == 0
        assert Outcome(stop=Stop.FATAL).exit_code() == 5
        assert Outcome(stop=Stop.INTERRUPT).exit_code() == 130
        assert Outcome(cancelled=True).exit_code() == 130
