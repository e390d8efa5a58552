"""Option values and sizes as polars expressions, derived from a profile's ``OptionSpec`` and ``SizeSpec``.

    canonical_expr(profile.options["quality"], pl.col("_src_quality"))    # "High" -> "high", "ultra" -> null
    size_allowed_expr(profile.sizes, pl.col("width"), pl.col("height"))   # bool; null when a side is

Each gives a whole column what ``OptionSpec.parse`` / ``SizeSpec.allows`` give one value (the tests
compare them cell by cell), so a million-row manifest is checked without a Python call per row.
The rules themselves (enum values, ranges, size fields) are read from the spec, never restated.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.config.profiles import BOOL_WORDS, OptionSpec, SizeSpec

__all__ = ["canonical_expr", "size_allowed_expr"]

# What Python's float() reads, minus the spellings no manifest means (inf, nan, 1_000, 0x10).
_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TINY = r"^(-?)0\.(0{4,})(\d)(\d*)$"  # polars spells 7.25e-05 as 0.0000725


def canonical_expr(spec: OptionSpec, text: pl.Expr) -> pl.Expr:
    """The canonical text of each value (as ``spec.parse`` gives it), or null when it is not allowed."""
    return _CANONICAL[spec.type](spec, text.str.strip_chars())


def _enum(spec: OptionSpec, value: pl.Expr) -> pl.Expr:
    spelling = {v.lower(): v for v in spec.values}
    return value.str.to_lowercase().replace_strict(spelling, default=None, return_dtype=pl.String)


def _bool(spec: OptionSpec, value: pl.Expr) -> pl.Expr:
    words = {word: spec.parse(word) for word in BOOL_WORDS}
    return value.str.to_lowercase().replace_strict(words, default=None, return_dtype=pl.String)


def _str(spec: OptionSpec, value: pl.Expr) -> pl.Expr:
    if spec.max_chars is None:
        return value
    return pl.when(value.str.len_chars() <= spec.max_chars).then(value)


def _number(spec: OptionSpec, value: pl.Expr) -> pl.Expr:
    number = pl.when(value.str.contains(_DECIMAL)).then(value.cast(pl.Float64, strict=False))
    ok = number.is_finite()
    if spec.type == "int":
        ok = ok & (number == number.floor())
    if spec.min is not None:
        ok = ok & (number >= spec.min)
    if spec.max is not None:
        ok = ok & (number <= spec.max)
    text = number.cast(pl.Int64, strict=False).cast(pl.String) if spec.type == "int" else _repr(number)
    return pl.when(ok).then(text)


def _repr(number: pl.Expr) -> pl.Expr:
    """Python's ``repr(float)``: polars agrees except below 1e-4, where Python writes ``7.25e-05``."""
    text = number.cast(pl.String).str.replace(r"e-(\d)$", "e-0$1")
    parts = text.str.extract_groups(_TINY)
    sign, zeros, first, rest = (parts.struct.field(str(i)) for i in range(1, 5))
    exponent = (zeros.str.len_chars() + 1).cast(pl.String).str.zfill(2)
    fraction = pl.when(rest != "").then(pl.concat_str([pl.lit("."), rest])).otherwise(pl.lit(""))
    scientific = pl.concat_str([sign, first, fraction, pl.lit("e-"), exponent])
    return pl.when(text.str.contains(_TINY)).then(scientific).otherwise(text)


_CANONICAL: dict[str, Callable[[OptionSpec, pl.Expr], pl.Expr]] = {
    "enum": _enum,
    "bool": _bool,
    "str": _str,
    "int": _number,
    "float": _number,
}


def size_allowed_expr(sizes: SizeSpec, width: pl.Expr, height: pl.Expr) -> pl.Expr:
    """``sizes.allows(width, height)`` for each row: a listed size, or one within the rule."""
    listed = pl.format("{}x{}", width, height).is_in(list(sizes.listed()))
    if not sizes.is_rule:
        return listed
    checks = _rule_checks(sizes, width, height)
    return listed | pl.all_horizontal(checks)


def _rule_checks(sizes: SizeSpec, width: pl.Expr, height: pl.Expr) -> list[pl.Expr]:
    """The conditions of ``SizeSpec._rule_checks``, each true when the size keeps the rule."""
    low, high = pl.min_horizontal(width, height), pl.max_horizontal(width, height)
    checks = [pl.lit(True)]
    if sizes.min_side is not None or sizes.max_side is not None:
        lo, hi = sizes.min_side or 1, sizes.max_side or 100_000
        checks.append((low >= lo) & (high <= hi))
    if sizes.step:
        checks.append((width % sizes.step == 0) & (height % sizes.step == 0))
    if sizes.min_pixels is not None:
        checks.append(width * height >= sizes.min_pixels)
    if sizes.max_pixels is not None:
        checks.append(width * height <= sizes.max_pixels)
    if sizes.max_aspect is not None:
        checks.append(high <= low * sizes.max_aspect)
    return checks
