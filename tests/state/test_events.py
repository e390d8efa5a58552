"""Events: one typed record per state change, one strict JSON line each (as 0.1's ledger held them)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

from pipeline.rows import ImageRequest, Row
from pipeline.state.events import (
    DownloadedEvent,
    DownloadFailedEvent,
    FailedEvent,
    ImageResult,
    JobEvent,
    RunEvent,
    SubmittedEvent,
    SucceededEvent,
    UploadedEvent,
    event_from_dict,
    event_to_json,
)

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"
TASK = "0d5e3a42-51b8-5c7e-9a0b-3f6d2c1e4b7a"


class TestEvents:
    def test_every_event_round_trips_through_one_json_line(self) -> None:
        """What is written is what is read back, field for field."""
        images = (
            ImageResult(index=0, image_uuid="img-a-0", image_url="http://x/a-0.jpg", cost_usd=0.1),
            ImageResult(index=1, image_uuid="img-a-1", image_url="http://x/a-1.jpg", cost_usd=None),
        )
        events = [
            JobEvent(namespace=NS, job="demo"),
            RunEvent(run_id="r1"),
            UploadedEvent(sha256="ab" * 32, image_uuid="u1"),
            SubmittedEvent(
                id="a",
                fingerprint="fp",
                task_uuid=TASK,
                attempt=1,
                run_id="r1",
                estimate_usd=0.011,
                request={"model": "openai:1@2", "prompt": "p a", "output_format": "JPG"},
            ),
            SucceededEvent(
                id="a", fingerprint="fp", task_uuid=TASK, run_id="r1", images=images, cost_usd=None
            ),
            FailedEvent(
                id="b",
                fingerprint="fp",
                task_uuid=TASK,
                run_id="r1",
                code="invalidPrompt",
                message="refused",
                retryable=False,
            ),
            DownloadedEvent(
                id="a",
                fingerprint="fp",
                task_uuid=TASK,
                index=0,
                image_uuid="u",
                path="p",
                sha256="s",
                bytes=3,
            ),
            DownloadFailedEvent(id="a", fingerprint="fp", task_uuid=TASK, index=1, message="404"),
        ]
        for event in events:
            line = event_to_json(event)
            assert "\n" not in line
            assert event_from_dict(json.loads(line)) == event

    def test_submitted_for_row_carries_request_and_passthrough(self) -> None:
        """The submitted line alone is enough to rebuild the results row."""
        request = ImageRequest("openai:1@2", "a red fox", 1024, 768, "low", "opaque", "PNG", 2, ("/r/a.png",))
        row = Row(
            row_number=3, id="sku-1", fingerprint="f1", request=request, passthrough={"category": "toys"}
        )
        ev = SubmittedEvent.for_row(row, task_uuid="t", attempt=1, run_id="r", estimate_usd=Decimal("0.011"))
        record = json.loads(event_to_json(ev))
        assert record["event"] == "submitted"
        assert record["request"]["prompt"] == "a red fox"
        assert record["request"]["reference_images"] == ["/r/a.png"]
        assert record["passthrough"] == {"category": "toys"}
        assert record["estimate_usd"] == 0.011

    def test_awkward_passthrough_values_become_strict_json(self) -> None:
        """NaN becomes null and dates become ISO strings, so the event log stays readable everywhere."""
        ev = SubmittedEvent(
            id="a",
            fingerprint="f",
            task_uuid="t",
            attempt=1,
            run_id="r",
            estimate_usd=None,
            request={},
            passthrough={"score": math.nan, "day": dt.date(2026, 1, 2), "price": Decimal("1.10")},
        )
        record = json.loads(event_to_json(ev))
        assert record["passthrough"] == {"score": None, "day": "2026-01-02", "price": 1.1}

    def test_an_unknown_kind_reads_as_none(self) -> None:
        """A line from a newer version is no event to this one (it is kept, not applied)."""
        assert event_from_dict({"event": "future", "x": 1}) is None
