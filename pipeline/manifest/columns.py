"""Manifest columns: map the file's columns to field names (``[columns]``), find passthrough columns.

columns = map_columns(spec, lf.collect_schema())
columns.renames       # {"sku": "id"}: file column -> field name
columns.passthrough   # ("category", "locale"): carried to the results table untouched
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.config.jobspec import JobSpec, manifest_fields
from pipeline.errors import ManifestError
from pipeline.manifest.fingerprint import FIELD_SEP, REF_SEP

__all__ = ["ManifestColumns", "map_columns"]


@dataclass(frozen=True)
class ManifestColumns:
    """The manifest's columns after mapping: which fields are present and what passes through."""

    renames: dict[str, str]
    schema: dict[str, pl.DataType]  # field / passthrough name -> dtype, in file order
    original: dict[str, str]  # field / passthrough name -> column name in the file

    @property
    def present(self) -> tuple[str, ...]:
        return tuple(self.schema)

    @property
    def has_id(self) -> bool:
        return "id" in self.schema

    @property
    def passthrough(self) -> tuple[str, ...]:
        fields = manifest_fields()
        return tuple(name for name in self.schema if name not in fields)

    def source(self, name: str) -> str:
        return self.original.get(name, name)

    def content_text_expr(self) -> pl.Expr:
        """A canonical text of the whole row (column names and values) for content-hash ids."""
        parts: list[pl.Expr] = []
        for name in sorted(self.schema, key=self.source):
            parts += [pl.lit(self.source(name)), _value_text(name, self.schema[name])]
        return pl.concat_str(parts, separator=FIELD_SEP)


def _value_text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if isinstance(dtype, pl.List) and not dtype.inner.is_nested():
        text = column.cast(pl.List(pl.String)).list.join(REF_SEP)
    elif dtype.is_nested():
        text = pl.struct(column).struct.json_encode()
    else:
        text = column.cast(pl.String)
    return text.fill_null("\x00")


def map_columns(spec: JobSpec, schema: pl.Schema) -> ManifestColumns:
    """Apply ``[columns]``; a mapped column missing, a clash, or no prompt column is a ``ManifestError``."""
    path = spec.manifest
    names = list(schema.names())
    listing = ", ".join(names) or "(none)"
    renames: dict[str, str] = {}
    for field, column in spec.columns.items():
        if column not in schema:
            raise ManifestError(
                path,
                f"column {column!r} (columns.{field} in the job spec) is not in the file; columns: {listing}",
            )
        if field in schema and field != column:
            raise ManifestError(
                path,
                f"column {field!r} clashes with columns.{field} = {column!r}: rename or drop one of them",
            )
        renames[column] = field
    mapped = {renames.get(name, name): name for name in names}
    if "prompt" not in mapped:
        raise ManifestError(
            path,
            f"no prompt column (name one 'prompt' or set columns.prompt in the job spec); columns: {listing}",
        )
    for reserved in [name for name in mapped if name.startswith("_")]:
        raise ManifestError(path, f"column {reserved!r}: names starting with '_' are reserved")
    return ManifestColumns(
        renames={k: v for k, v in renames.items() if k != v},
        schema={field: schema[column] for field, column in mapped.items()},
        original=mapped,
    )
