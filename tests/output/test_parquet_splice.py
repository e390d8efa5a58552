"""Row groups copied byte for byte between Parquet files: what polars and pyarrow read back."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.output.results.parquet_splice import Footer, Splice, SpliceError, extract


def _frame(start: int, rows: int) -> pl.DataFrame:
    """Every kind of column a results table has: strings, ints, floats, datetimes, lists, structs, nulls."""
    return pl.DataFrame(
        {
            "id": [f"r{i:04d}" for i in range(start, start + rows)],
            "n": [i if i % 3 else None for i in range(start, start + rows)],
            "x": [i / 7 for i in range(start, start + rows)],
            "at": [dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i) for i in range(rows)],
            "tags": [["a", str(i)] if i % 2 else None for i in range(rows)],
            "s": [{"k": i, "v": "z"} for i in range(rows)],
            "kind": ["image" if i % 5 else "failed" for i in range(rows)],  # dictionary-encoded
        }
    )


def _parquet(frame: pl.DataFrame, *, pyarrow: bool = False, **options: object) -> bytes:
    buffer = io.BytesIO()
    if pyarrow:
        pq.write_table(frame.to_arrow(), buffer, **options)
    else:
        frame.write_parquet(buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _footer(data: bytes) -> bytes:
    length = int.from_bytes(data[-8:-4], "little")
    return data[-8 - length : -8]


class TestFooter:
    @pytest.mark.parametrize(
        "options",
        [
            {"row_group_size": 40},
            {"pyarrow": True, "row_group_size": 40},
            {"pyarrow": True, "row_group_size": 40, "write_page_index": True, "use_dictionary": True},
        ],
    )
    def test_a_footer_read_and_written_again_is_the_same_bytes(self, options: dict[str, object]) -> None:
        """Every field survives decoding, those it does not know included."""
        data = _parquet(_frame(0, 100), **options)  # type: ignore[arg-type]
        footer = Footer.of_bytes(data)
        assert footer.encode() == _footer(data)
        assert footer.start == len(data) - 8 - len(_footer(data))
        assert [footer.group_rows(i) for i in range(len(footer.groups))] == [40, 40, 20]

    def test_a_file_that_is_not_parquet_is_refused(self, tmp_path: Path) -> None:
        """No footer, no splice."""
        path = tmp_path / "x.parquet"
        path.write_bytes(b"PAR1 not really a parquet file")
        with path.open("rb") as f, pytest.raises(SpliceError):
            Footer.read(f)


class TestSplice:
    @pytest.mark.parametrize("pyarrow", [False, True])
    def test_row_groups_from_several_files_read_back_in_order(self, tmp_path: Path, pyarrow: bool) -> None:
        """Groups of three files, some skipped: polars and pyarrow read exactly the groups copied."""
        frames = [_frame(0, 100), _frame(100, 30), _frame(130, 50)]
        files = [_parquet(f, pyarrow=pyarrow, row_group_size=40) for f in frames]
        template = Footer.of_bytes(_parquet(frames[0].clear(), pyarrow=pyarrow))
        out = tmp_path / "out.parquet"
        with out.open("wb") as f:
            splice = Splice(f, template)
            for data, skip in zip(files, (1, None, 0), strict=True):
                footer = Footer.of_bytes(data)
                source = io.BytesIO(data)
                for index in range(len(footer.groups)):
                    if index != skip:
                        splice.copy(source, footer, index)
            splice.close()
        expected = pl.concat([frames[0].slice(0, 40), frames[0].slice(80), frames[1], frames[2].slice(40)])
        assert pl.read_parquet(out).equals(expected)
        assert pl.DataFrame(pl.from_arrow(pq.read_table(out))).equals(expected)
        assert pq.ParquetFile(out).metadata.num_rows == expected.height
        found = pl.scan_parquet(out).filter(pl.col("id").is_in(["r0050", "r0085", "r0150", "r0175"]))
        assert found.collect()["id"].to_list() == ["r0085", "r0175"]  # statistics still right

    def test_the_template_gives_the_key_value_metadata(self, tmp_path: Path) -> None:
        """The new file says what its template says, whatever the copied groups' files said."""
        template = Footer.of_bytes(_parquet(_frame(0, 10).clear(), metadata={"mark": "7"}))
        out = tmp_path / "out.parquet"
        with out.open("wb") as f:
            splice = Splice(f, template)
            splice.copy_all(_parquet(_frame(0, 10), metadata={"mark": "3"}))
            splice.close()
        assert pl.read_parquet_metadata(out)["mark"] == "7"
        assert pl.read_parquet(out).equals(_frame(0, 10))

    def test_no_row_groups_is_an_empty_table(self, tmp_path: Path) -> None:
        """A splice of nothing still has the template's columns."""
        template = Footer.of_bytes(_parquet(_frame(0, 10).clear()))
        out = tmp_path / "out.parquet"
        with out.open("wb") as f:
            Splice(f, template).close()
        assert pl.read_parquet(out).equals(_frame(0, 10).clear())

    def test_a_group_of_another_schema_is_refused(self) -> None:
        """Groups only move between files whose schemas are encoded alike."""
        template = Footer.of_bytes(_parquet(_frame(0, 10).clear()))
        other = _parquet(_frame(0, 10).drop("tags"))
        with pytest.raises(SpliceError, match="another schema"):
            Splice(io.BytesIO(), template).copy_all(other)

    def test_one_row_group_as_a_file_of_its_own(self) -> None:
        """``extract`` gives a whole Parquet file of the groups asked for (none: just the schema)."""
        data = _parquet(_frame(0, 100), row_group_size=40)
        footer = Footer.of_bytes(data)
        group = pl.read_parquet(io.BytesIO(extract(io.BytesIO(data), footer, [1])))
        assert group.equals(_frame(0, 100).slice(40, 40))
        empty = extract(io.BytesIO(data), footer, [])
        assert pl.read_parquet_schema(io.BytesIO(empty)) == _frame(0, 10).schema

    def test_statistics_bound_a_column(self) -> None:
        """A row group's min and max of a column, from its statistics."""
        footer = Footer.of_bytes(_parquet(_frame(0, 100), row_group_size=40))
        assert footer.bounds(1, "id") == (b"r0040", b"r0079")
        assert footer.bounds(0, "no such column") is None
