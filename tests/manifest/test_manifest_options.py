"""The vectorised option and size rules give, cell by cell, what the profile's own methods give."""

from __future__ import annotations

import random

import polars as pl
import pytest

from pipeline.config.profiles import OptionSpec, SizeSpec, model_profiles
from pipeline.manifest.options import canonical_expr, size_allowed_expr

CELLS = [
    *("low", "LOW", " medium ", "High", "auto", "ultra", "", "turbo", "Euler a", "EULER A", "2k", "0.5k"),
    *("true", "True", "1", "0", "yes", "NO", "on", "off", "none"),
    *("7", "7.0", "7.", "+4", "-3", "-0", ".5", "7.5", "1e3", "1E-5", "0.00001234", "1e-9", "2.675"),
    *("0", "1", "6", "50", "51", "2147483647", "2147483648", "9007199254740993", "30.0000001"),
    *("inf", "-inf", "nan", "1e400", "0x10", "e5", "1e", "+", "-", ".", "1.2.3", "seven", "7 7"),
    *("a long negative prompt " * 20, "short"),
]
# Python's float() also reads 1_000 and non-ASCII digits; the manifest does not (no catalog means them).
_RANDOM = random.Random(8)
NUMBERS = [repr(_RANDOM.uniform(-5, 60)) for _ in range(300)] + [
    repr(_RANDOM.uniform(0, 1e-3)) for _ in range(100)
]

SPECS = [
    OptionSpec(type="enum", values=("low", "Medium", "HIGH")),
    OptionSpec(type="bool"),
    OptionSpec(type="str"),
    OptionSpec(type="str", max_chars=40),
    OptionSpec(type="int"),
    OptionSpec(type="int", min=1, max=2147483647),
    OptionSpec(type="float"),
    OptionSpec(type="float", min=0, max=2),
]


def _catalog_specs() -> list[tuple[str, OptionSpec]]:
    specs = {(name, spec) for p in model_profiles().values() for name, spec in p.options.items()}
    return sorted(specs, key=lambda pair: (pair[0], pair[1].model_dump_json()))


def _parse(spec: OptionSpec, cell: str) -> str | None:
    try:
        return spec.parse(cell)
    except ValueError:
        return None


@pytest.mark.parametrize(
    "spec",
    SPECS + [spec for _, spec in _catalog_specs()],
    ids=[f"test-{s.type}-{i}" for i, s in enumerate(SPECS)] + [name for name, _ in _catalog_specs()],
)
def test_canonical_text_in_polars_is_what_parse_gives(spec: OptionSpec) -> None:
    """For each cell: the same canonical text as OptionSpec.parse, or null where parse refuses."""
    cells = CELLS + NUMBERS + list(spec.values) + [v.upper() for v in spec.values]
    frame = pl.DataFrame({"cell": cells}, schema={"cell": pl.String})
    got = frame.select(canonical_expr(spec, pl.col("cell")).alias("value"))["value"].to_list()
    assert got == [_parse(spec, cell) for cell in cells]


def _sizes_to_try(sizes: SizeSpec) -> list[tuple[int, int]]:
    sides = [1, 255, 256, 480, 512, 1000, 1024, 1264, 1536, 2048, 2049, 2560, 3840, 3856, 4096, 8192]
    grid = [(w, h) for w in sides for h in sides]
    listed = [tuple(int(x) for x in size.split("x")) for size in sizes.listed()]
    return grid + [(w, h) for w, h in listed] + [(w + 16, h) for w, h in listed]


@pytest.mark.parametrize(
    "sizes",
    [
        *(p.sizes for p in model_profiles().values()),
        SizeSpec(min_pixels=1_000_000, max_pixels=4_000_000, max_aspect=2.5),
        SizeSpec(fixed=("1024x1024",), step=64),
        SizeSpec(min_side=0, max_side=2000),
    ],
    ids=[*model_profiles(), "pixel band", "list and step", "side range"],
)
def test_size_checks_in_polars_are_what_the_profile_allows(sizes: SizeSpec) -> None:
    """Every profile's sizes (lists, tiers, side, step, pixel and aspect rules) over a grid of sizes."""
    pairs = _sizes_to_try(sizes)
    frame = pl.DataFrame({"w": [w for w, _ in pairs], "h": [h for _, h in pairs]})
    got = frame.select(size_allowed_expr(sizes, pl.col("w"), pl.col("h")).alias("ok"))["ok"].to_list()
    assert got == [sizes.allows(w, h) for w, h in pairs]
