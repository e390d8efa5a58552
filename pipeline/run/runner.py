"""One run of a job, end to end: lock, state, HTTP client, engine, progress, signals, results.

    outcome = await run_job(spec, Provider(endpoint, api_key, delivery="sync"))

The manifest's first batch is read before anything is sent, so a bad file stops the run with exit 2.
The job's state is opened inside the lock (a 0.1 ``ledger.jsonl`` is imported on first use, with progress
on ``console``). The results table is rewritten every ``output.results_interval_s`` (a failure there is a
warning), on interrupt, and at the end, where a failure is an error: a run without its table never exits
0. The first SIGINT/SIGTERM stops dispatching and drains; a second cancels in-flight work (it stays in
doubt; what was already answered is still committed).
"""

from __future__ import annotations

import functools
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
from rich.console import Console

from pipeline.config.jobspec import JobSpec
from pipeline.errors import PipelineError, StoreError
from pipeline.manifest.reader import Manifest, ManifestBatch, open_batches, open_manifest
from pipeline.output.results.write import remove_stale_temps, write_rejects, write_results
from pipeline.output.status import record_manifest
from pipeline.run.engine import Engine, EngineHooks, RowBatch
from pipeline.run.fetcher import Fetcher
from pipeline.run.outcome import Outcome, Stop
from pipeline.run.progress import Tally, show_progress
from pipeline.runware.client import Delivery, RunwareClient
from pipeline.runware.http_lean import LeanConnections
from pipeline.runware.http_shards import ShardedTransport, environment_proxy
from pipeline.state import Store, open_job_state
from pipeline.state.events import RunEvent
from pipeline.state.ids import new_run_id
from pipeline.state.lock import job_lock
from pipeline.state.rule import FAILED, IN_DOUBT, SUCCEEDED

__all__ = ["Provider", "run_job"]

log = logging.getLogger("pipeline.run")


@dataclass(frozen=True)
class Provider:
    """Where to send tasks and how. ``api_key`` never leaves this object except in the auth header."""

    endpoint: str
    api_key: str = field(repr=False)  # a logged or printed Provider must not show the key
    delivery: Delivery = "sync"

    def __repr__(self) -> str:
        return f"Provider(endpoint={self.endpoint!r}, delivery={self.delivery!r})"


def _open_rows(manifest: Manifest, state: Path, batch_size: int) -> Iterator[ManifestBatch]:
    """The manifest's batches, each classified by one question to the state (on a connection of its
    own: the batches are read in worker threads), its finished rows only counted."""
    try:
        with Store.open(state) as reader:
            yield from open_batches(manifest, reader.unfinished, batch_size)
    finally:
        manifest.close()


async def run_job(
    spec: JobSpec,
    provider: Provider,
    *,
    hooks: EngineHooks | None = None,
    console: Console | None = None,
    progress_interval: float = 10.0,
    handle_signals: bool = True,
    batch_size: int = 10_000,
    batches: Iterator[RowBatch] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Outcome:
    """Run or resume ``spec`` until every row is done, failed for good, or a limit is hit."""
    drive = functools.partial(
        _drive, console=console, progress_interval=progress_interval, handle_signals=handle_signals
    )
    with job_lock(spec.out_dir, spec.name):
        for tmp in remove_stale_temps(spec.out_dir):
            log.info("removed %s, left by a run killed while writing it", tmp.name)
        store, stream = await _open_job(spec, console, batch_size, batches)
        try:
            run_id = new_run_id()
            store.record(RunEvent(run_id=run_id))
            async with _provider(spec, provider, transport) as (http, client):
                engine = _engine(spec, client, http, store, run_id, hooks or EngineHooks())
                await _run_engine(spec, engine, stream, drive)
            outcome = _totals(engine.outcome, store)
            if batches is None and outcome.manifest_done:
                _record_manifest(store, spec, outcome)
        finally:
            store.close()
        with anyio.CancelScope(shield=True):
            await _write_tables(spec, outcome)
    return outcome


async def _open_job(
    spec: JobSpec, console: Console | None, batch_size: int, batches: Iterator[RowBatch] | None
) -> tuple[Store, Iterator[RowBatch]]:
    """The job's state and its rows: the manifest's batches (a bad manifest fails here, before the
    state is opened), or ``batches`` when given."""
    if batches is not None:
        return await anyio.to_thread.run_sync(functools.partial(_open_state, spec, console)), iter(batches)
    manifest = await anyio.to_thread.run_sync(open_manifest, spec, batch_size)
    try:
        store = await anyio.to_thread.run_sync(functools.partial(_open_state, spec, console))
    except BaseException:
        manifest.close()
        raise
    return store, _open_rows(manifest, store.path, batch_size)


@asynccontextmanager
async def _provider(
    spec: JobSpec, provider: Provider, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[tuple[httpx.AsyncClient, RunwareClient]]:
    """The run's HTTP client and the provider's client on it (and the lean connections it posts on)."""
    # Loading the CA certificates takes 25 ms: once for the pools and the lean connections alike.
    ssl_context = None if transport is not None else httpx.create_ssl_context()
    lean = _lean_connections(spec, provider.endpoint, transport, ssl_context)
    async with _http_client(spec, provider.endpoint, transport, ssl_context) as http, lean or nullcontext():
        yield (
            http,
            RunwareClient(http, provider.endpoint, provider.api_key, delivery=provider.delivery, lean=lean),
        )


def _engine(
    spec: JobSpec,
    client: RunwareClient,
    http: httpx.AsyncClient,
    store: Store,
    run_id: str,
    hooks: EngineHooks,
) -> Engine:
    """The engine, with a fetcher that records through its writer when the job downloads images."""
    fetcher = Fetcher(http, spec, lambda event: engine.record(event)) if spec.output.download else None
    engine = Engine(
        spec, client, store, run_id=run_id, tally=Tally(hooks.clock), hooks=hooks, fetcher=fetcher
    )
    return engine


async def _run_engine(
    spec: JobSpec,
    engine: Engine,
    stream: Iterator[RowBatch],
    drive: Callable[[Engine, Iterator[RowBatch]], Awaitable[None]],
) -> None:
    """Drive the engine; on an error, keep what was done in the results table before raising it."""
    try:
        with _unwrapped():
            await drive(engine, stream)
    except PipelineError:
        with anyio.CancelScope(shield=True):
            await _write_results(spec)
        raise


def _totals(outcome: Outcome, store: Store) -> Outcome:
    """The outcome with the job's totals, from what was committed."""
    outcome.images = store.totals()["images"]
    outcome.spent_usd = store.spent_usd()
    return outcome


def _open_state(spec: JobSpec, console: Console | None) -> Store:
    """The job's state (imported from a 0.1 ledger on first use, showing progress on ``console``)."""
    return open_job_state(
        spec.out_dir,
        job=spec.name,
        durability=spec.ledger.fsync,
        group_commit_ms=spec.ledger.group_commit_ms,
        progress=None if console is None else _import_progress(console),
    )


def _record_manifest(store: Store, spec: JobSpec, outcome: Outcome) -> None:
    """What this run learnt of the whole manifest (its rows by state), so `pipeline status` answers
    without reading it again."""
    rows, rejected = outcome.rows, len(outcome.rejects)
    seen = {state: rows[state] for state in (SUCCEEDED, FAILED, IN_DOUBT)}  # pending: also unseen rows
    try:
        record_manifest(store, spec, total=sum(rows.values()) + rejected, rejected=rejected, seen=seen)
    except StoreError as exc:  # only a shortcut for `pipeline status`: it reads the manifest instead
        log.warning("could not record the manifest's summary: %s", exc)


def _import_progress(console: Console) -> Callable[[int, int], None]:
    """A progress callback for the import of a 0.1 ledger: a line every tenth of it."""
    shown = [-1]

    def show(done: int, total: int) -> None:
        tenth = 10 * done // total if total else 10
        if tenth > shown[0]:
            shown[0] = tenth
            console.print(
                f"importing the 0.1 ledger.jsonl into state.db (kept untouched): {10 * tenth}% "
                f"of {total / 1e6:.1f} MB",
                highlight=False,
                markup=False,
            )

    return show


@contextmanager
def _unwrapped() -> Iterator[None]:
    """Task groups wrap errors in exception groups: surface our own error (a ledger that cannot be
    written, a manifest batch that cannot be read) so the CLI reports it with its exit code."""
    try:
        yield
    except BaseExceptionGroup as group:
        matched, _ = group.split(PipelineError)
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group


def _http_client(
    spec: JobSpec,
    endpoint: str,
    transport: httpx.AsyncBaseTransport | None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """The run's httpx client: requests to the provider's origin (all but the POSTs of
    ``_lean_connections``) go through small pools (``http_shards``); images on other hosts through
    httpx's own pool, honouring the environment's proxies for both."""
    connections = spec.limits.concurrency + 8
    timeout = httpx.Timeout(spec.limits.request_timeout_s, connect=min(30.0, spec.limits.request_timeout_s))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    if transport is not None:
        return httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)
    url = httpx.URL(endpoint)
    origin = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    ssl_context = ssl_context or httpx.create_ssl_context()
    shards = ShardedTransport(connections, proxy=environment_proxy(endpoint), ssl_context=ssl_context)
    return httpx.AsyncClient(timeout=timeout, limits=limits, mounts={origin: shards}, verify=ssl_context)


def _lean_connections(
    spec: JobSpec,
    endpoint: str,
    transport: httpx.AsyncBaseTransport | None,
    ssl_context: ssl.SSLContext | None = None,
) -> LeanConnections | None:
    """Connections for the provider's POSTs (``http_lean``: a fifth of httpx's CPU a request), unless a
    transport is injected or the environment names a proxy (which only httpx speaks)."""
    if transport is not None or environment_proxy(endpoint) is not None:
        return None
    return LeanConnections(spec.limits.concurrency + 8, ssl_context=ssl_context)


async def _drive(
    engine: Engine,
    batches: Iterator[RowBatch],
    console: Console | None,
    progress_interval: float,
    handle_signals: bool,
) -> None:
    """The engine, with progress, periodic results and signal handling beside it."""
    with anyio.CancelScope() as work:
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_watch_signals, engine, work)
            if console is not None:
                tg.start_soon(show_progress, engine.tally, console, progress_interval)
            tg.start_soon(_results_loop, engine.spec)
            await engine.run(batches)
            tg.cancel_scope.cancel()
    if work.cancelled_caught:
        engine.outcome.cancelled = True


async def _watch_signals(engine: Engine, work: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if engine.stopping and engine.outcome.stop is Stop.INTERRUPT:
                log.warning("second %s: cancelling in-flight work", signal.Signals(signum).name)
                work.cancel()
                return
            log.warning("%s: stopping dispatch, finishing in-flight work", signal.Signals(signum).name)
            engine.stop(Stop.INTERRUPT)


async def _results_loop(spec: JobSpec) -> None:
    """Rewrite the results table every ``results_interval_s``, but never spend more than about a tenth
    of the run on it (a write decodes only the rows touched since the last one, but copies the whole
    table, which grows with the job)."""
    wait = spec.output.results_interval_s
    while True:
        await anyio.sleep(wait)
        started = anyio.current_time()
        await _write_results(spec)
        wait = max(spec.output.results_interval_s, 9 * (anyio.current_time() - started))


async def _write_results(spec: JobSpec) -> None:
    """A table written during the run (or before an error is reported): a failure is only a warning,
    the state has it all and the next write (the last one at the latest) tries again."""
    try:
        await anyio.to_thread.run_sync(write_results, spec.out_dir, spec.name, spec.output.formats)
    except Exception as exc:
        log.warning("could not write the results table: %s", exc)


async def _write_tables(spec: JobSpec, outcome: Outcome) -> None:
    """The run's last word: its results (and rejects) tables. A failure is the run's error (exit 1),
    never a warning: cron must not report success for a run that left no table."""
    try:
        await anyio.to_thread.run_sync(write_results, spec.out_dir, spec.name, spec.output.formats)
        if outcome.manifest_done:  # an incomplete list would replace the previous run's full one
            rejects = outcome.rejects
            await anyio.to_thread.run_sync(write_rejects, spec.out_dir, rejects, spec.output.formats)
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(
            f"{spec.out_dir}: could not write the results table: {_reason(exc)}; the job's state has "
            "every result: free the space (or fix the cause) and run `pipeline results` or the job again"
        ) from exc


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc)
