"""The manifest: one row per request, read in batches so memory stays flat in the manifest's size.

    for batch in read_manifest(spec, batch_size=10_000):   # ManifestError (exit 2) for a bad file
        batch.rows      # list[Row]: accepted rows, in manifest order
        batch.rejects   # list[Reject]: row number, id and reason of each bad row

Opening a manifest checks the file as a whole before the first batch: it is copied in one pass to a
private Parquet snapshot (so every byte is decoded), columns are mapped, every model must be known,
duplicate ids are found. A bad file thus stops a run before anything is sent. Batches are then read from
the snapshot one row group at a time. Row rules are polars expressions (``manifest_rules``); references
(``manifest_refs``), ids and fingerprints are computed per batch.

A validated frame (``Manifest.frames``) has ``_row, _id, _fp, _reason``, the request fields (``model``,
``prompt``, ``width``, ``height``, ``output_format``, ``number_results``), one column per option in
``Manifest.options`` (canonical text, null when unset), ``_refs`` and the passthrough columns. A checked
frame (``Manifest.checked_frames``) is the same without ``_fp``: ``Manifest.digests`` hashes its rows
when a caller needs them (``pipeline plan``: as raw bytes, what the state stores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import starmap
from typing import Any

import polars as pl

from pipeline.config.jobspec import JobSpec
from pipeline.config.profiles import model_profiles
from pipeline.errors import ManifestError
from pipeline.manifest.columns import ManifestColumns, map_columns
from pipeline.manifest.files import Snapshot, scan_table
from pipeline.manifest.fingerprint import fingerprint_text_expr, hash_texts, sha256_digests
from pipeline.manifest.refs import RowReferences
from pipeline.manifest.rules import RowRules
from pipeline.rows import LEGACY_OPTIONS, SCALARS, ImageRequest, Row

__all__ = [
    "Manifest",
    "ManifestBatch",
    "Reject",
    "Unfinished",
    "open_batches",
    "open_manifest",
    "read_manifest",
]

ID_LENGTH = 16  # hex digits of a content-hash id
_SURVEY_ROWS = 1_000_000  # rows per slice of the survey (of a few columns)


@dataclass(frozen=True, slots=True)
class Reject:
    """A manifest row that will not be sent, and why."""

    row_number: int
    id: str | None
    reason: str


@dataclass(slots=True)
class ManifestBatch:
    rows: list[Row]
    rejects: list[Reject]
    done: dict[str, int] = field(default_factory=dict)  # rows left out as finished, by model (a run's)


# A run's question to the state for a batch: (position, state, seen) of the rows not finished, given
# their ids and fingerprints as raw sha256 bytes (``Store.unfinished``).
Unfinished = Callable[[list[str], list[bytes]], list[tuple[int, str | None, bool]]]


def read_manifest(spec: JobSpec, batch_size: int = 10_000) -> Iterator[ManifestBatch]:
    """Accepted rows and rejects of ``spec.manifest``, batch by batch.

    The file is checked as a whole at the first ``next()`` (a ``ManifestError`` then, before any
    batch), so a caller can do that slow first step in a worker thread.
    """
    with open_manifest(spec, batch_size) as manifest:
        for frame in manifest.frames(batch_size):
            yield manifest.to_batch(frame)


def open_batches(
    manifest: Manifest, unfinished: Unfinished, batch_size: int = 10_000
) -> Iterator[ManifestBatch]:
    """``read_manifest`` for a run: the rows the state has finished are only counted (``done``), so
    a nightly run over a big catalog builds Row objects and fingerprint text for its changes only."""
    for frame in manifest.checked_frames(batch_size):
        yield manifest.open_batch(frame, unfinished)


def open_manifest(spec: JobSpec, batch_size: int = 10_000) -> Manifest:
    """Check ``spec.manifest`` as a whole; raises ``ManifestError`` for a file-level problem.

    Use it as a context manager (or call ``close``) to remove its snapshot early.
    """
    lf = scan_table(spec.manifest)
    columns = map_columns(spec, lf.collect_schema())
    refs = RowReferences(spec)
    snapshot = Snapshot(lf.rename(columns.renames), spec.manifest, row_group_size=batch_size)
    manifest = Manifest(spec, snapshot, columns, refs)
    try:
        manifest.survey()
    except BaseException:
        manifest.close()
        raise
    return manifest


class Manifest:
    """An opened manifest: its columns, total rows and duplicate ids; ``frames`` validates batches."""

    def __init__(
        self, spec: JobSpec, snapshot: Snapshot, columns: ManifestColumns, refs: RowReferences
    ) -> None:
        self.spec = spec
        self.path = spec.manifest
        self.columns = columns
        self.total_rows = 0
        self._snapshot = snapshot
        self._dup_first: dict[Any, int] = {}
        self._content_seen: dict[Any, tuple[str, int]] = {}
        self._refs = refs
        self._rules = RowRules(columns.schema, spec.defaults, sources=columns.original)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the snapshot; the manifest cannot give more batches afterwards."""
        self._snapshot.close()

    @property
    def passthrough(self) -> tuple[str, ...]:
        return self.columns.passthrough

    @property
    def options(self) -> tuple[str, ...]:
        """The option columns of a validated frame: every option a profile declares, sorted."""
        return self._rules.options

    def _key_expr(self) -> pl.Expr:
        """Duplicate key: the id itself, or a (same-process) hash of the whole row for content ids."""
        if self.columns.has_id:
            return pl.col("id").cast(pl.String).str.strip_chars()
        return pl.struct(self.columns.present).hash()

    def survey(self) -> None:
        """Count rows, check every model is known, find duplicate ids: one pass over the snapshot that
        keeps 8 bytes a row (a hash of each key; the rows whose hashes clash are then compared)."""
        exprs = [pl.col("_row"), self._key_expr().hash().alias("_h")]
        if "model" in self.columns.present:
            exprs.append(pl.col("model").cast(pl.String).str.strip_chars().alias("model"))
        hashes: list[pl.Series] = []
        models: list[pl.DataFrame] = []  # each model's first row
        for part in self._snapshot.slices(_SURVEY_ROWS, exprs):
            hashes.append(part["_h"])
            if "model" in part.columns:
                models.append(part.group_by("model").agg(pl.col("_row").min()))
        self.total_rows = self._snapshot.rows
        if models:
            self._check_models(pl.concat(models).group_by("model").agg(pl.col("_row").min()))
        self._dup_first = self._duplicates(pl.concat([pl.Series("_h", [], pl.UInt64), *hashes]).sort())

    def _check_models(self, firsts: pl.DataFrame) -> None:
        known = model_profiles()
        unknown = firsts.filter(pl.col("model").is_not_null() & (pl.col("model") != ""))
        unknown = unknown.filter(~pl.col("model").is_in(list(known))).sort("_row")
        if unknown.height:
            column = self.columns.source("model")
            raise ManifestError(
                self.path,
                f"row {unknown['_row'][0]}: unknown model {unknown['model'][0]!r} in column {column!r} "
                f"(known: {', '.join(sorted(known))})",
            )

    def _duplicates(self, hashes: pl.Series) -> dict[Any, int]:
        """Each key that more than one row has, and its first row (``hashes``: of every row's key,
        sorted)."""
        clashing = hashes.filter(hashes == hashes.shift(1)).unique()
        if clashing.is_empty():
            return {}
        exprs = [pl.col("_row"), self._key_expr().alias("_k")]
        parts = self._snapshot.slices(_SURVEY_ROWS, exprs, self._key_expr().hash().is_in(clashing.implode()))
        rows = pl.concat(parts)
        dups = rows.filter(pl.col("_k").is_duplicated()).group_by("_k").agg(pl.col("_row").min())
        return dict(zip(dups["_k"].to_list(), dups["_row"].to_list(), strict=True))

    def frames(
        self, batch_size: int = 10_000, fingerprint_ids: pl.Series | None = None
    ) -> Iterator[pl.DataFrame]:
        """Validated batches: ``_row, _id, _fp, _reason``, the request fields, ``_refs``, passthrough.

        ``fingerprint_ids``: fingerprint only rows with these ids (the planner needs fingerprints only
        for ids the ledger has seen; sha256 is the costliest step); ``_fp`` is null for the others.
        """
        for raw in self._snapshot.slices(batch_size):
            yield self._validate(raw, fingerprint_ids)

    def checked_frames(self, batch_size: int = 10_000) -> Iterator[pl.DataFrame]:
        """``frames`` without fingerprints (no ``_fp``): for a caller that hashes only what it needs,
        with ``digests``."""
        for raw in self._snapshot.slices(batch_size):
            yield self._check(raw)

    def digests(self, frame: pl.DataFrame) -> list[bytes | None]:
        """The fingerprint of each row of a checked frame as its 32 raw bytes (``bytes.hex()`` of one is
        its ``_fp``); None for a rejected row."""
        text = pl.when(pl.col("_reason").is_null()).then(self._fingerprint_text(frame))
        return sha256_digests(frame.select(text.alias("_fp")).to_series())

    def _check(self, raw: pl.DataFrame) -> pl.DataFrame:
        """Rules, ids and references: everything but the fingerprint."""
        frame = self._rules.apply(raw.with_columns(self._id_expr(), self._key_expr().alias("_k")))
        if not self.columns.has_id:
            frame = frame.with_columns(hash_texts(frame["_id"], ID_LENGTH))
        frame = frame.with_columns(_reason=pl.coalesce(pl.col("_reason"), self._id_reasons(frame)))
        return self._rules.after_references(self._refs.apply(frame))

    def _validate(self, raw: pl.DataFrame, fingerprint_ids: pl.Series | None = None) -> pl.DataFrame:
        frame = self._check(raw)
        wanted = pl.col("_reason").is_null()
        if fingerprint_ids is not None:
            # Narrow the (large) id list to this batch first: hashing the batch's ids and probing the
            # list is ~8x cheaper than hashing the whole list for every batch.
            here = fingerprint_ids.filter(fingerprint_ids.is_in(frame["_id"].drop_nulls().implode()))
            wanted = wanted & pl.col("_id").is_in(here.implode())
        frame = frame.with_columns(_fp=pl.when(wanted).then(self._fingerprint_text(frame)))
        return frame.with_columns(hash_texts(frame["_fp"]))

    def _fingerprint_text(self, frame: pl.DataFrame) -> pl.Expr:
        return fingerprint_text_expr(pl.col("_refkeys"), options=self._options_set(frame))

    def _options_set(self, frame: pl.DataFrame) -> list[str]:
        """The option columns besides quality and background that some row of ``frame`` sets (an
        option no row sets adds nothing to a fingerprint or a request)."""
        return [n for n in self.options if n not in LEGACY_OPTIONS and frame[n].null_count() < frame.height]

    def _id_expr(self) -> pl.Expr:
        if self.columns.has_id:
            return pl.col("id").cast(pl.String).str.strip_chars().replace("", None).alias("_id")
        return self.columns.content_text_expr().alias("_id")

    def _id_reasons(self, frame: pl.DataFrame) -> pl.Series:
        """Empty ids and duplicates (the first row with an id keeps it; later ones are rejected)."""
        empty = pl.lit("empty id") if self.columns.has_id else pl.lit(None, dtype=pl.String)
        reasons = frame.select(pl.when(pl.col("_id").is_null()).then(empty).alias("_reason"))["_reason"]
        if not self._dup_first:
            return reasons
        keys = pl.Series(list(self._dup_first), dtype=frame["_k"].dtype)
        candidates = frame.with_row_index("_pos").filter(
            pl.col("_k").is_in(keys.implode()) & reasons.is_null()
        )
        values = reasons.to_list()
        for pos, key, row_id, row in candidates.select("_pos", "_k", "_id", "_row").iter_rows():
            values[pos] = self._duplicate(key, row_id, row, self._dup_first[key])
        return pl.Series("_reason", values, dtype=pl.String)

    def _duplicate(self, key: Any, row_id: str, row: int, first: int) -> str | None:
        if self.columns.has_id:
            return None if row == first else f"duplicate id {row_id!r} (first on row {first})"
        seen = self._content_seen.get(key)
        if seen is None or seen[0] != row_id:  # first occurrence, or a mere hash collision
            self._content_seen[key] = (row_id, row)
            return None
        return f"duplicate row: same content as row {seen[1]}"

    def ask(
        self, accepted: pl.DataFrame, unfinished: Unfinished
    ) -> tuple[list[bytes], list[tuple[int, str | None, bool]]]:
        """The fingerprint digests of a checked frame's accepted rows, and what ``unfinished`` (the
        state) answers about them: one question for the batch."""
        digests = [digest for digest in self.digests(accepted) if digest is not None]  # all have one
        return digests, unfinished(accepted["_id"].to_list(), digests)

    def open_batch(self, frame: pl.DataFrame, unfinished: Unfinished) -> ManifestBatch:
        """The batch of a checked frame, with only the accepted rows ``unfinished`` lists."""
        good = frame.filter(pl.col("_reason").is_null())
        digests, found = self.ask(good, unfinished)
        keep = [pos for pos, _, _ in found]
        kept = good[keep].with_columns(_fp=pl.Series([digests[pos].hex() for pos in keep], dtype=pl.String))
        bad = frame.filter(pl.col("_reason").is_not_null()).with_columns(_fp=pl.lit(None, dtype=pl.String))
        batch = self.to_batch(pl.concat([bad, kept], how="diagonal_relaxed"))
        finished = good.with_row_index("_pos").filter(~pl.col("_pos").is_in(keep)).group_by("model").len()
        batch.done = dict(zip(finished["model"].to_list(), finished["len"].to_list(), strict=True))
        return batch

    def to_batch(self, frame: pl.DataFrame) -> ManifestBatch:
        """Row objects for the accepted rows of a validated frame, Rejects for the others."""
        bad = frame.filter(pl.col("_reason").is_not_null())
        rejects = [
            Reject(n, i, r)
            for n, i, r in zip(
                bad["_row"].to_list(), bad["_id"].to_list(), bad["_reason"].to_list(), strict=True
            )
        ]
        good = frame.filter(pl.col("_reason").is_null())
        passthrough = good.select(self.passthrough).to_dicts() if self.passthrough else None
        keys = [good[c].to_list() for c in ("_row", "_id", "_fp")]
        requests = starmap(ImageRequest, zip(*self._request_columns(good), strict=True))
        rows = []
        for i, (n, row_id, fp, request) in enumerate(zip(*keys, requests, strict=True)):
            rows.append(Row(n, row_id, fp, request, passthrough[i] if passthrough else {}))
        return ManifestBatch(rows, rejects)

    def _request_columns(self, good: pl.DataFrame) -> list[list[Any]]:
        """The accepted rows' request fields, one list per field in ``ImageRequest`` order (a column
        each but the references, resolved in ``_refs``, and the options, a column each)."""
        scalars = good.select(SCALARS).with_columns(pl.col(LEGACY_OPTIONS).fill_null(""))
        refs = [tuple(r or ()) for r in good["_refs"].to_list()]
        options = self._row_options(good) or [()] * good.height
        return [*(scalars[c].to_list() for c in SCALARS), refs, options]

    def _row_options(self, good: pl.DataFrame) -> list[tuple[tuple[str, str], ...]]:
        """Per row, (name, text) of every option set besides quality and background, sorted by name."""
        names = self._options_set(good)
        if not names:
            return []
        columns = [good[n].to_list() for n in names]
        return [
            tuple((n, v) for n, v in zip(names, values, strict=True) if v is not None)
            for values in zip(*columns, strict=True)
        ]
