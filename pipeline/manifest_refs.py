"""Per-row references: a reference set's images, then the row's own; resolved, counted and keyed.

    refs = RowReferences(spec)   # loads spec.reference_sets (set_id -> image, one row per image)
    frame = refs.apply(frame)    # adds _refs (resolved references), _refkeys and _refn; rejects bad rows

How many references a model takes is a model rule (``manifest_rules``), checked over ``_refn``.

Vectorised: each distinct reference text is resolved once in Python (``ReferenceResolver`` caches),
everything per row is a polars join or aggregation, so a million rows cost seconds.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.errors import ManifestError
from pipeline.fingerprint import REF_SEP
from pipeline.jobspec import JobSpec
from pipeline.manifest_io import scan_table, table_errors
from pipeline.references import (
    CONTROL_PATTERN,
    REMOTE_PATTERN,
    ReferenceProblem,
    ReferenceResolver,
    split_references,
)

__all__ = ["RowReferences", "load_reference_sets"]

_SET_COLUMNS = ("set_id", "image")
_RESOLVED = pl.Schema({"_ref": pl.String, "_res": pl.String, "_key": pl.String, "_problem": pl.String})


def load_reference_sets(path: Path) -> dict[str, list[str]]:
    """``set_id -> images`` in file order; missing columns or an unreadable file is a ``ManifestError``."""
    lf = scan_table(path)
    schema = lf.collect_schema()
    missing = [c for c in _SET_COLUMNS if c not in schema]
    if missing:
        raise ManifestError(
            path, f"a reference-sets file needs columns set_id and image; missing: {', '.join(missing)}"
        )
    with table_errors(path):
        frame = lf.select(pl.col(c).cast(pl.String).str.strip_chars() for c in _SET_COLUMNS).collect()
    sets: dict[str, list[str]] = {}
    for set_id, image in frame.iter_rows():
        if set_id and image:
            sets.setdefault(set_id, []).append(image)
    return sets


def _resolve_sets(sets: dict[str, list[str]], resolver: ReferenceResolver) -> pl.DataFrame:
    """One row per set: resolved references and keys (joined), count, or its first bad image."""
    rows: list[tuple[str, str | None, str | None, int, str | None]] = []
    for set_id, images in sets.items():
        try:
            resolved = [resolver.resolve(image) for image in images]
        except ReferenceProblem as problem:
            rows.append((set_id, None, None, 0, f"reference set {set_id!r}: {problem}"))
            continue
        refs, keys = REF_SEP.join(r for r, _ in resolved), REF_SEP.join(k for _, k in resolved)
        rows.append((set_id, refs, keys, len(resolved), None))
    schema = {"_set": pl.String, "_set_res": pl.String, "_set_key": pl.String, "_set_n": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "_set_problem": pl.String}, orient="row")


class RowReferences:
    """Resolves the references of each row of a manifest (local files relative to their own file)."""

    def __init__(self, spec: JobSpec) -> None:
        self._has_sets_file = spec.reference_sets is not None
        sets = load_reference_sets(spec.reference_sets) if spec.reference_sets else {}
        base = spec.reference_sets.parent if spec.reference_sets else Path()
        self._sets = _resolve_sets(sets, ReferenceResolver(base))
        self._resolver = ReferenceResolver(spec.manifest.parent)

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Adds ``_refs`` (list, null when none), ``_refkeys`` and ``_refn`` (the count); a bad reference
        sets ``_reason``."""
        frame = frame.with_columns(_i=pl.int_range(pl.len(), dtype=pl.Int64), **self._own_lists(frame))
        own = self._own(frame)
        sets = self._set_parts(frame)
        merged = frame.join(own, on="_i", how="left").join(sets, on="_i", how="left")
        refs = pl.concat_str(["_set_res", "_own_res"], separator=REF_SEP, ignore_nulls=True)
        keys = pl.concat_str(["_set_key", "_own_key"], separator=REF_SEP, ignore_nulls=True)
        count = pl.col("_set_n").fill_null(0) + pl.col("_own_n").fill_null(0)
        reason = pl.coalesce("_reason", "_set_problem", "_own_problem")
        out = merged.with_columns(_reason=reason, _refkeys=pl.when(count > 0).then(keys), _refn=count)
        out = out.with_columns(_refs=pl.when(count > 0).then(refs.str.split(REF_SEP)))
        return out.drop("_i", "_own", "_own_res", "_own_key", "_own_n", "_own_problem").drop(
            "_set_res", "_set_key", "_set_n", "_set_problem"
        )

    def _own_lists(self, frame: pl.DataFrame) -> dict[str, pl.Expr | pl.Series]:
        """``_own``: the row's reference_images as a list; ``_own_parse``: why a cell could not be read."""
        if "reference_images" not in frame.columns:
            return {
                "_own": pl.lit(None, dtype=pl.List(pl.String)),
                "_own_parse": pl.lit(None, dtype=pl.String),
            }
        column = frame["reference_images"]
        if isinstance(column.dtype, pl.List):
            stripped = (
                pl.col("reference_images").cast(pl.List(pl.String)).list.eval(pl.element().str.strip_chars())
            )
            return {"_own": stripped, "_own_parse": pl.lit(None, dtype=pl.String)}
        if column.dtype != pl.String:
            column = column.cast(pl.String)
        return dict(zip(("_own", "_own_parse"), _parse_cells(column), strict=True))

    def _own(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per row with own references: resolved (joined), keys (joined), count, first problem."""
        exploded = (
            frame.filter(pl.col("_reason").is_null() & pl.col("_own").is_not_null())
            .select("_i", "_own_parse", _ref=pl.col("_own"))
            .explode("_ref")
            .filter(pl.col("_ref").is_not_null() & (pl.col("_ref") != ""))
        )
        unique = exploded.select(pl.col("_ref").unique())
        remote = pl.col("_ref").str.contains(REMOTE_PATTERN) & ~pl.col("_ref").str.contains(CONTROL_PATTERN)
        as_given = unique.filter(remote).select(
            "_ref", _res="_ref", _key="_ref", _problem=pl.lit(None, pl.String)
        )
        local = [self._resolve(ref) for ref in unique.filter(~remote)["_ref"].to_list()]
        resolved = pl.concat([as_given, pl.DataFrame(local, schema=_RESOLVED, orient="row")])
        joined = exploded.join(resolved, on="_ref", how="left", maintain_order="left")
        per_row = joined.group_by("_i", maintain_order=True).agg(
            _own_res=pl.col("_res").str.join(REF_SEP),
            _own_key=pl.col("_key").str.join(REF_SEP),
            _own_n=pl.len().cast(pl.Int64),
            _own_problem=pl.coalesce(pl.col("_own_parse").first(), pl.col("_problem").drop_nulls().first()),
        )
        parse_only = frame.filter(pl.col("_own_parse").is_not_null()).select("_i", _own_problem="_own_parse")
        return pl.concat([per_row, parse_only], how="diagonal").unique("_i", keep="first")

    def _resolve(self, ref: str) -> tuple[str, str | None, str | None, str | None]:
        try:
            resolved, key = self._resolver.resolve(ref)
        except ReferenceProblem as problem:
            return (ref, None, None, str(problem))
        return (ref, resolved, key, None)

    def _set_parts(self, frame: pl.DataFrame) -> pl.DataFrame:
        if "reference_set" not in frame.columns:
            return pl.DataFrame(schema={"_i": pl.Int64, **self._sets.drop("_set").schema})
        wanted = frame.select(
            "_i", _set=pl.col("reference_set").cast(pl.String).str.strip_chars().replace("", None)
        )
        wanted = wanted.filter(pl.col("_set").is_not_null())
        joined = wanted.join(self._sets, on="_set", how="left")
        hint = "" if self._has_sets_file else " (the job spec has no reference_sets file)"
        unknown = pl.format(f"unknown reference set '{{}}'{hint}", pl.col("_set"))
        known = pl.col("_set_n").is_not_null() | pl.col("_set_problem").is_not_null()
        return joined.with_columns(
            _set_problem=pl.when(known).then(pl.col("_set_problem")).otherwise(unknown)
        ).drop("_set")


def _parse_cells(column: pl.Series) -> tuple[pl.Series, pl.Series]:
    """CSV cells: ``|``-separated lists split in polars; JSON arrays (rare) parsed in Python."""
    split = column.str.split("|").list.eval(pl.element().str.strip_chars())
    json_rows = column.str.starts_with("[").fill_null(False)
    if not json_rows.any():
        return split, pl.Series(values=[None] * len(column), dtype=pl.String)
    lists: list[list[str] | None] = split.to_list()
    problems: list[str | None] = [None] * len(column)
    for i in json_rows.arg_true().to_list():
        try:
            lists[i] = split_references(column[i])
        except ReferenceProblem as problem:
            lists[i], problems[i] = None, str(problem)
    return pl.Series(values=lists, dtype=pl.List(pl.String)), pl.Series(values=problems, dtype=pl.String)
