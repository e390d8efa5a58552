"""Bad input files stop `pipeline plan` before anything is sent: exit 2, a clear message, no traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from helpers.manifest_jobs import write_job

from pipeline.cli import main
from pipeline.cli._output import err_console


def _parquet_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    pl.DataFrame({"id": [f"r{i}" for i in range(2000)], "prompt": ["a chair"] * 2000}).write_parquet(buffer)
    return buffer.getvalue()


def _corrupt_parquet(folder: Path) -> Path:
    data = bytearray(_parquet_bytes())
    for i in range(200, 600):  # scramble the data pages, keep the footer
        data[i] ^= 0x5A
    return write_job(folder, bytes(data), name="m.parquet")


def _missing_manifest(folder: Path) -> Path:
    job = write_job(folder, "id,prompt\na,p\n", name="m.csv")
    (folder / "m.csv").unlink()
    return job


def _missing_sets(folder: Path) -> Path:
    job = write_job(folder, "id,prompt\na,p\n")
    job.write_text(job.read_text() + 'reference_sets = "nope.csv"\n')
    return job


def _job(content: str | bytes, name: str = "m.csv", spec: str = "", sets: str | None = None) -> Maker:
    return lambda folder: write_job(folder, content, name=name, spec=spec, sets=sets)


Maker = Callable[[Path], Path]
OK = "id,prompt\na,p\n"

BAD_INPUTS = [
    pytest.param(_missing_manifest, "m.csv: no such file", id="missing manifest"),
    pytest.param(lambda d: d / "absent.toml", "absent.toml: no such job spec", id="missing job spec"),
    pytest.param(
        _job(_parquet_bytes()[:-300], "m.parquet"), "not a readable Parquet file", id="truncated parquet"
    ),
    pytest.param(_corrupt_parquet, "not a readable Parquet file", id="corrupt parquet"),
    pytest.param(_job(b"hello, world", "m.parquet"), "not a readable Parquet file", id="not parquet at all"),
    pytest.param(
        _job("id,prompt\na,p\nb,p,extra\n"),
        "not a valid CSV file: line 3 has 3 fields, the header has 2",
        id="ragged CSV",
    ),
    pytest.param(
        _job('id,prompt\na,"p\nb,q\n'),
        "the row starting on line 2 has an unclosed quote",
        id="unclosed quote",
    ),
    pytest.param(_job(""), "the file is empty", id="empty CSV"),
    pytest.param(_job("", "m.jsonl"), "the file is empty", id="empty JSONL"),
    pytest.param(_job(b"", "m.parquet"), "the file is empty", id="empty Parquet"),
    pytest.param(_job("id,text\na,p\n"), "no prompt column", id="no prompt column"),
    pytest.param(
        _job("id,prompt,id\na,p,b\n"),
        "column 'id' appears more than once in the header",
        id="repeated column",
    ),
    pytest.param(
        _job(OK, spec='[columns]\nid = "sku"\n'),
        "column 'sku' (columns.id in the job spec) is not in the file",
        id="mapped column absent",
    ),
    pytest.param(
        _job("id,prompt\na,caf\xe9 cr\xe8me\n".encode("latin-1")),
        "line 2 is not UTF-8 text",
        id="latin-1 CSV",
    ),
    pytest.param(
        _job('{"id": "a", "prompt": "caf\xe9"}\n'.encode("latin-1"), "m.jsonl"),
        "not UTF-8",
        id="latin-1 JSONL",
    ),
    pytest.param(
        _job('{"id": "a", "prompt": "p"}\n{"id": "b", \n', "m.jsonl"),
        "not a valid JSON Lines file: line 2",
        id="bad JSON line",
    ),
    pytest.param(
        _job(OK, spec='[defaults]\nmodel = "openai:9@9"\n'),
        "defaults.model: unknown model 'openai:9@9'",
        id="unknown model (defaults)",
    ),
    pytest.param(
        _job("id,prompt,model\na,p,\nb,p,dall-e-9\n"),
        "row 2: unknown model 'dall-e-9'",
        id="unknown model (row)",
    ),
    pytest.param(_job("x", "m.xlsx"), "unsupported file type '.xlsx'", id="unsupported file type"),
    pytest.param(
        _job(OK, spec='[columns]\nsku = "id"\n'), "columns: unknown field 'sku'", id="unknown [columns] field"
    ),
    pytest.param(_missing_sets, "nope.csv: no such file", id="missing reference-sets file"),
    pytest.param(
        _job(OK, sets="name,image\nx,a.png\n"),
        "needs columns set_id and image; missing: set_id",
        id="reference sets without set_id",
    ),
    pytest.param(
        _job(OK, spec='[defaults]\nquality = "ultra"\n'),
        "defaults.quality: 'ultra' is not allowed for openai:gpt-image@2 (allowed: low, medium, high, auto)",
        id="bad default quality",
    ),
    pytest.param(
        _job(OK, spec='[defaults]\nmodel = "openai:1@2"\nwidth = 800\n'),
        "defaults.width: size 800x1024 is not allowed for openai:1@2",
        id="bad default size",
    ),
    pytest.param(
        _job(OK, spec="[defaults]\nsed = 7\n"),
        "defaults.sed: unknown key (options: ",
        id="unknown [defaults] key",
    ),
]


@pytest.fixture
def wide_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Messages on one line: rich wraps at the terminal width, which is 80 under pytest."""
    monkeypatch.setenv("COLUMNS", "500")
    err_console.cache_clear()
    yield
    err_console.cache_clear()


@pytest.mark.usefixtures("wide_stderr")
@pytest.mark.parametrize(("make", "message"), BAD_INPUTS)
@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Maker,
    message: str,
    json_flag: list[str],
) -> None:
    """Exit 2, the message on stderr, no traceback, nothing on stdout, nothing written."""
    job = make(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["plan", str(job), *json_flag])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert message in err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert out == ""
    assert not (tmp_path / "out").exists()
