"""The sandbox's pure parts: settings and latency, fault dice, billing arithmetic, validation, retention."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.config.profiles import load_model_profile
from pipeline.sandbox import SandboxSettings
from pipeline.sandbox.billing import Billing
from pipeline.sandbox.faults import FaultDice
from pipeline.sandbox.settings import Latency, parse_duration, parse_latency
from pipeline.sandbox.store import Store, TaskRecord
from pipeline.sandbox.validation import validate_inference
from pipeline.sandbox.wire import WireError


class TestSettings:
    @pytest.mark.parametrize(
        ("text", "seconds"), [("0", 0.0), ("300ms", 0.3), ("2s", 2.0), ("1.5", 1.5), ("1m", 60.0)]
    )
    def test_durations(self, text: str, seconds: float) -> None:
        """Durations read as seconds, with ms, s or m units."""
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize(
        ("text", "latency"),
        [
            ("0", Latency("fixed", 0.0)),
            ("300ms", Latency("fixed", 0.3)),
            ("uniform:100ms-2s", Latency("uniform", 0.1, 2.0)),
            ("lognormal:800ms:0.5", Latency("lognormal", 0.8, 0.5)),
        ],
    )
    def test_latency_forms(self, text: str, latency: Latency) -> None:
        """The documented latency forms parse."""
        assert parse_latency(text) == latency

    @pytest.mark.parametrize(
        "text", ["fast", "uniform:2s-1s", "uniform:1s", "lognormal:1s", "lognormal:1s:-1"]
    )
    def test_bad_latency(self, text: str) -> None:
        """A latency that does not parse is refused with the reason."""
        with pytest.raises(ValidationError):
            SandboxSettings(latency=text)

    def test_fault_rates_are_checked(self) -> None:
        """Unknown fault kinds, rates outside 0..1 and rates adding past 1 are refused."""
        for faults in ({"teapot": 0.1}, {"429": -0.1}, {"429": 0.6, "503": 0.6}):
            with pytest.raises(ValidationError):
                SandboxSettings(faults=faults)
        assert SandboxSettings(faults={"429": 0.5, "hang": 0.5}).faults == {"429": 0.5, "hang": 0.5}


class TestDice:
    def test_rates_are_honoured(self) -> None:
        """Over many rolls each fault comes up at about its rate."""
        dice = FaultDice(SandboxSettings(seed=1, faults={"429": 0.2, "drop": 0.1}))
        rolls = [dice.roll() for _ in range(10_000)]
        assert rolls.count("429") == pytest.approx(2000, rel=0.1)
        assert rolls.count("drop") == pytest.approx(1000, rel=0.15)
        assert rolls.count(None) == pytest.approx(7000, rel=0.05)

    def test_seed_reproduces(self) -> None:
        """The same seed gives the same faults and latencies."""
        settings = SandboxSettings(seed=9, faults={"503": 0.5}, latency="lognormal:100ms:0.5")
        one, two = FaultDice(settings), FaultDice(settings)
        assert [one.roll() for _ in range(50)] == [two.roll() for _ in range(50)]
        assert [one.latency() for _ in range(50)] == [two.latency() for _ in range(50)]

    def test_uniform_latency_in_range(self) -> None:
        """Uniform latencies stay within their bounds."""
        dice = FaultDice(SandboxSettings(seed=2, latency="uniform:100ms-200ms"))
        assert all(0.1 <= dice.latency() <= 0.2 for _ in range(1000))

    def test_quiet(self) -> None:
        """No faults and no latency is the fast path."""
        assert FaultDice(SandboxSettings()).quiet
        assert not FaultDice(SandboxSettings(latency="1ms")).quiet


class TestBilling:
    def test_exact_sum(self) -> None:
        """A thousand charges of 0.011 sum to exactly 11."""
        billing = Billing()
        for _ in range(1000):
            billing.charge(str(uuid.uuid4()), ("openai:1@2", "p"), 1, Decimal("0.011"))
        summary = billing.summary()
        assert summary["total_usd"] == 11.0
        assert summary["total_usd_exact"] == "11.000"
        assert summary["duplicate_prompts"] == 999

    def test_duplicate_task(self) -> None:
        """The same taskUUID charged twice is one duplicate task."""
        billing = Billing()
        billing.charge("t1", ("openai:1@2", "a"), 1, Decimal("0.011"))
        billing.charge("t1", ("openai:1@2", "a"), 1, Decimal("0.011"))
        billing.charge("t2", ("openai:1@2", "b"), 2, Decimal("0.022"))
        summary = billing.summary()
        assert (summary["tasks"], summary["images"], summary["duplicate_tasks"]) == (3, 4, 1)
        assert summary["duplicate_task_uuids"] == ["t1"]

    def test_balance(self) -> None:
        """Spend and reservations count against the balance; a top-up adds credit."""
        billing = Billing(balance_usd=Decimal("0.03"))
        billing.charge("t", ("openai:1@2", "a"), 1, Decimal("0.011"))
        assert billing.can_afford(Decimal("0.011"), reserved=Decimal(0))
        assert not billing.can_afford(Decimal("0.011"), reserved=Decimal("0.011"))
        billing.top_up(Decimal("1"))
        assert billing.remaining_usd() == Decimal("1.019")


def task(**overrides: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "openai:1@1",
        "positivePrompt": "a kite",
        "width": 1024,
        "height": 1536,
        **overrides,
    }


class TestValidation:
    def test_defaults(self) -> None:
        """Omitted parameters take Runware's defaults; price comes from the model profile."""
        valid = validate_inference(task(), known_image=lambda _: False)
        assert (valid.output_type, valid.output_format, valid.number_results) == ("URL", "JPG", 1)
        assert (valid.option("quality"), valid.delivery, valid.include_cost) == (None, "sync", True)
        assert valid.price_usd == Decimal("0.25")  # unset: the provider's auto, priced as high

    def test_price_by_quality_and_size(self) -> None:
        """The price is the profile's, by quality and size."""
        settings = {"providerSettings": {"openai": {"quality": "low"}}}
        assert validate_inference(task(**settings), known_image=lambda _: False).price_usd == Decimal("0.016")

    def test_references(self) -> None:
        """URLs, data URIs, base64 and known UUIDs are references; unknown UUIDs are not."""
        known = str(uuid.uuid4())
        refs = [
            "https://x.test/a.jpg",
            "data:image/png;base64,iVBORw0KGgo=",
            "iVBORw0KGgoAAAANSUhEUg==",
            known,
        ]
        valid = validate_inference(task(inputs={"referenceImages": refs}), known_image=lambda u: u == known)
        assert valid.references == tuple(refs)
        with pytest.raises(WireError) as info:
            validate_inference(
                task(inputs={"referenceImages": [str(uuid.uuid4())]}), known_image=lambda _: False
            )
        assert info.value.parameter == "inputs.referenceImages"

    def test_unknown_parameter(self) -> None:
        """A parameter the model does not declare is refused as the real API does, naming it."""
        with pytest.raises(WireError) as info:
            validate_inference(task(colour="red"), known_image=lambda _: False)
        assert (info.value.status, info.value.code, info.value.parameter) == (
            400,
            "unsupportedParameter",
            "colour",
        )

    def test_options_are_canonical(self) -> None:
        """Options are read wherever the profile places them, as canonical text under their names."""
        raw = task(providerSettings={"openai": {"quality": "LOW", "background": "transparent"}})
        valid = validate_inference(raw, known_image=lambda _: False)
        assert valid.options == (("background", "transparent"), ("quality", "low"))

    def test_bool_is_not_a_number(self) -> None:
        """width true is not a width."""
        with pytest.raises(WireError):
            validate_inference(task(width=True), known_image=lambda _: False)


class TestRetirementSettings:
    def test_retired_code(self) -> None:
        """A named model is refused with its code; --lifecycle refuses from the shutdown date on."""
        mini, live = load_model_profile("openai:1@2"), load_model_profile("openai:gpt-image@2")
        shutdown = mini.lifecycle.shutdown
        assert shutdown is not None
        named = SandboxSettings(retire={"openai:1@2": "modelUnavailable"})
        assert (named.retired_code(mini), named.retired_code(live)) == ("modelUnavailable", None)
        lifecycle = SandboxSettings(lifecycle=True, today=shutdown)
        assert (lifecycle.retired_code(mini), lifecycle.retired_code(live)) == ("invalidModel", None)
        eve = SandboxSettings(lifecycle=True, today=shutdown - dt.timedelta(days=1))
        assert eve.retired_code(mini) is None
        assert SandboxSettings(today=shutdown).retired_code(mini) is None

    def test_today_defaults_to_the_utc_date(self) -> None:
        """Without an injected date, the lifecycle is judged on today's UTC date."""
        assert SandboxSettings().judged_on() == dt.datetime.now(dt.UTC).date()


class TestRetention:
    def test_results_kept_for_an_hour_then_pruned(self) -> None:
        """A completed task is kept an hour (and more); after the retention it is forgotten."""
        store = Store()
        valid = validate_inference(task(), known_image=lambda _: False)
        now = time.monotonic()
        store.add_task(TaskRecord(valid, accepted_at=now, items=[], completed_at=now))
        store.prune(now=now + 3600)
        assert valid.task_uuid in store.tasks
        store.prune(now=now + store.retention_s + 1)
        assert valid.task_uuid not in store.tasks


def test_exported_members() -> None:
    """pipeline.sandbox exports exactly its public names: each one resolves (imported on first use),
    and nothing else public sits in the package's namespace but its submodules."""
    import pipeline.sandbox as sandbox

    missing = [name for name in sandbox.__all__ if not hasattr(sandbox, name)]
    assert missing == []
    public = {name for name in vars(sandbox) if not name.startswith("_")}
    modules = {"app", "billing", "faults", "images", "render", "server", "service", "settings", "store"}
    modules |= {"uploads", "validation", "wire"}
    assert public - modules <= set(sandbox.__all__)
