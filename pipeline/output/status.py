"""What the job's state says now, at any size: `pipeline status` and the job totals of `pipeline run --json`.

    store = read_state(spec.out_dir)              # imports a 0.1 ledger.jsonl once; None: no state yet
    status_payload(store, spec)                   # {"rows": {...}, "images", "spent_usd", "exit_code"}
    status_payload(store, spec, verify=True)      # re-read the manifest for exact manifest-relative rows
    record_manifest(store, spec, total=..., rejected=..., seen=...)   # what plan and run learn of it

"Instant at any size" means: the store's running totals (rows by state, images, spend) and a small
*manifest summary* kept beside them (how many rows the manifest has, how many it rejects, and the rows
the state holds that the manifest no longer has, by state: old fingerprints of changed rows). Every
command that reads the whole manifest anyway (plan, run, ``status --verify``) records it, with a
signature of the job spec and the manifest (paths, sizes, modification times). While the signature
matches, status reads nothing else: pending is what the manifest has that the state has not finished.
When it does not (the manifest or the spec was edited, or the job comes from 0.1), status reads the
manifest once, as 0.1 did, and records the summary. A reference file edited in place changes rows'
fingerprints without touching either file: ``--verify`` re-reads everything.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pipeline.state import LEDGER_NAME, STATE_NAME, Store, import_ledger
from pipeline.state.rule import FAILED, IN_DOUBT, PENDING, ROW_STATES, SUCCEEDED

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config.jobspec import JobSpec
    from pipeline.manifest.reader import Manifest

__all__ = [
    "ManifestSummary",
    "manifest_signature",
    "read_state",
    "record_manifest",
    "status_payload",
]

_NOTES: Final = "manifest."
_SHOW_PROGRESS_BYTES: Final = 64 * 1024 * 1024  # smaller ledgers import in a second or two


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rimporting the 0.1 ledger into {STATE_NAME}: {100 * done // max(total, 1)}%")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def read_state(out_dir: str | Path) -> Store | None:
    """The job's store for reading; a 0.1 ``ledger.jsonl`` is imported first, once (kept untouched,
    progress on stderr for a big one). None when the job has no state at all (never ran)."""
    out = Path(out_dir)
    ledger = out / LEDGER_NAME
    big = ledger.exists() and ledger.stat().st_size >= _SHOW_PROGRESS_BYTES
    import_ledger(ledger, out / STATE_NAME, progress=_progress if big else None)
    if not (out / STATE_NAME).exists():
        return None
    return Store.open(out / STATE_NAME)


# -- the manifest summary ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """What status needs of the manifest, recorded by the last command that read it."""

    signature: int
    total: int  # rows, rejected ones included
    rejected: int
    stale: Mapping[str, int]  # rows of the state, by state, that the manifest no longer has


def manifest_signature(spec: JobSpec) -> int:
    """Changes when the job spec or the manifest is edited, moved or replaced."""
    parts = []
    for path in (spec.spec_path, spec.manifest):
        try:
            info = path.stat()
            parts.append(f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}|missing")
    digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")  # 56 bits: an integer every database keeps


def record_manifest(
    store: Store,
    spec: JobSpec,
    *,
    total: int,
    rejected: int,
    seen: Mapping[str, int],
    counts: Mapping[str, int] | None = None,
) -> ManifestSummary:
    """Record the manifest's summary. ``seen``: the manifest's accepted rows the state knows, by state;
    ``counts``: ``store.counts()`` of the same snapshot (default: now). The rest of the state is stale."""
    counts = store.counts() if counts is None else counts
    stale = {state: max(0, counts[state] - seen.get(state, 0)) for state in ROW_STATES}
    summary = ManifestSummary(manifest_signature(spec), total, rejected, stale)
    notes = {"signature": summary.signature, "total": total, "rejected": rejected}
    store.set_notes(_NOTES, notes | {f"stale_{state}": n for state, n in stale.items()})
    return summary


def _recorded(store: Store, spec: JobSpec) -> ManifestSummary | None:
    notes = store.notes(_NOTES)
    if notes.get("signature") != manifest_signature(spec):
        return None
    stale = {state: notes.get(f"stale_{state}", 0) for state in ROW_STATES}
    return ManifestSummary(notes["signature"], notes.get("total", 0), notes.get("rejected", 0), stale)


def _read_manifest(store: Store, spec: JobSpec, batch_size: int = 50_000) -> ManifestSummary:
    """Classify every manifest row against the state (one lookup statement per batch), then record the
    summary."""
    import polars as pl

    from pipeline.manifest.reader import open_manifest  # polars and the manifest rules: only when needed

    seen: Counter[str] = Counter()
    total = rejected = 0
    with store.snapshot(), open_manifest(spec, batch_size) as manifest:
        for frame in manifest.checked_frames(batch_size):
            total += frame.height
            good = frame.filter(pl.col("_reason").is_null())
            rejected += frame.height - good.height
            seen.update(_known(store, manifest, good))
        counts = store.counts()
    return record_manifest(store, spec, total=total, rejected=rejected, seen=seen, counts=counts)


def _known(store: Store, manifest: Manifest, good: pl.DataFrame) -> Counter[str]:
    """How many accepted rows of a batch the state knows (their id and fingerprint), by state."""
    if good.height == 0:
        return Counter()
    _, unfinished = manifest.ask(good, store.unfinished)
    known = Counter(state for _, state, _ in unfinished if state is not None)
    known[SUCCEEDED] += good.height - len(unfinished)
    return known


# -- the payload --------------------------------------------------------------------------------------


def status_payload(store: Store | None, spec: JobSpec, *, verify: bool | None = None) -> dict[str, Any]:
    """The `pipeline status --json` shape (also the job totals of `pipeline run --json`).

    ``verify``: True re-reads the manifest; None (default) reads it only when no summary of this
    manifest is recorded; False never does (rows the state has seen, by state; pending then counts only
    the rows the state has seen and not finished).
    """
    if store is None:  # never ran: every accepted row is pending
        summary = None if verify is False else _summary_without_state(spec)
        return _payload(dict.fromkeys(ROW_STATES, 0), summary, images=0, spent=0.0)
    summary = None if verify else _recorded(store, spec)
    if summary is None and verify is not False:
        summary = _read_manifest(store, spec)
    return _payload(store.counts(), summary, images=store.totals()["images"], spent=float(store.spent_usd()))


def _payload(
    counts: Mapping[str, int], summary: ManifestSummary | None, *, images: int, spent: float
) -> dict[str, Any]:
    """The manifest's rows by state (the state's counts less its stale rows; unseen rows are pending);
    without a summary, every row the state has seen."""
    if summary is None:
        total, rejected, current = sum(counts.values()), 0, dict(counts)
    else:
        current = {s: max(0, counts[s] - summary.stale.get(s, 0)) for s in (SUCCEEDED, FAILED, IN_DOUBT)}
        accepted = summary.total - summary.rejected
        current[PENDING] = max(0, accepted - sum(current.values()))
        total, rejected = summary.total, summary.rejected
    rows = {"total": total, "rejected": rejected} | {
        s: current[s] for s in (SUCCEEDED, FAILED, PENDING, IN_DOUBT)
    }
    return {"rows": rows, "images": images, "spent_usd": spent, "exit_code": 0}


def _summary_without_state(spec: JobSpec) -> ManifestSummary:
    """A job that never ran: the manifest's rows and rejects (no fingerprint needed)."""
    from pipeline.manifest.reader import open_manifest

    total = rejected = 0
    with open_manifest(spec) as manifest:
        for frame in manifest.checked_frames(50_000):
            total += frame.height
            rejected += int(frame["_reason"].is_not_null().sum())
    return ManifestSummary(manifest_signature(spec), total, rejected, {})
