"""Rows, job specs and one engine run against the scripted Runware (``fake_runware``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from helpers.fake_runware import FakeRunware
from helpers.job_state import state_events
from pipeline.config.jobspec import JobSpec, load_job_spec
from pipeline.rows import ImageRequest, Row
from pipeline.run.engine import Engine, EngineHooks
from pipeline.run.outcome import Outcome
from pipeline.run.reconcile import Poll
from pipeline.run.retry import Backoff
from pipeline.runware.client import Delivery, RunwareClient
from pipeline.state import open_job_state

KEY = "sk-engine-test-KEY"


@dataclass
class Batch:
    rows: list[Row]
    rejects: list[Any] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)


def make_row(i: int, prompt: str | None = None, refs: tuple[str, ...] = (), n: int = 1) -> Row:
    prompt = prompt or f"a red bicycle number {i}"
    request = ImageRequest("openai:1@2", prompt, 1024, 1024, "medium", "opaque", "JPG", n, refs)
    fingerprint = hashlib.sha256(repr(request).encode()).hexdigest()[:32]
    return Row(i + 1, f"row{i}", fingerprint, request, {"sku": f"SKU-{i}"})


def make_spec(tmp_path: Path, **limits: Any) -> JobSpec:
    lim = {"concurrency": 4, "max_attempts": 4, "request_timeout_s": 5, **limits}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in lim.items())
    (tmp_path / "job.toml").write_text(
        f'name = "t"\nmanifest = "m.csv"\noutput_dir = "out"\n[limits]\n{body}\n[output]\ndownload = false\n'
    )
    return load_job_spec(tmp_path / "job.toml")


FAST = EngineHooks(backoff=Backoff(base=0.001, cap=0.01), poll=Poll(interval=0.001, max_interval=0.01))


async def run(
    spec: JobSpec, fake: FakeRunware, rows: list[Row], hooks: EngineHooks = FAST, delivery: Delivery = "sync"
) -> Outcome:
    return await run_with(spec, fake.transport(), rows, hooks, delivery)


async def run_with(
    spec: JobSpec,
    transport: httpx.AsyncBaseTransport,
    rows: list[Row],
    hooks: EngineHooks = FAST,
    delivery: Delivery = "sync",
) -> Outcome:
    """One engine run over ``rows`` with the job's state, as ``run_job`` opens it."""
    with open_job_state(spec.out_dir, job=spec.name) as store:
        async with httpx.AsyncClient(transport=transport) as http:
            client = RunwareClient(http, "http://f/v1", KEY, delivery=delivery)
            engine = Engine(spec, client, store, run_id="r1", hooks=hooks)
            return await engine.run(iter([Batch(rows)]))


def events(spec: JobSpec, kind: str) -> list[Any]:
    return [e for e in state_events(spec.out_dir) if e.kind == kind]
