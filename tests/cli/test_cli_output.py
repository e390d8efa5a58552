"""What the CLI prints: user data (paths, ids, categories) appears exactly as written, never as markup."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main


def exit_code(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code or 0)


def test_an_error_names_a_bracketed_path_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing manifest whose path holds [brackets] is named as it is, so the user can find it."""
    folder = tmp_path / "jobs[red]"
    folder.mkdir()
    (folder / "job.toml").write_text('name = "x"\nmanifest = "prompts[bold].csv"\n')
    assert exit_code("plan", str(folder / "job.toml")) == 2
    err = capsys.readouterr().err
    assert f"error: {folder / 'prompts[bold].csv'}: no such file" in err
    assert "Traceback" not in err


def test_report_table_shows_bracketed_categories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A passthrough value like '[dim]sale' is a group key in the table, printed as written."""
    (tmp_path / "m.csv").write_text("id,prompt,category\na,a red chair,[dim]sale\nb,a blue chair,[dim]sale\n")
    job = tmp_path / "job.toml"
    job.write_text('name = "brk"\nmanifest = "m.csv"\noutput_dir = "out"\n[output]\ndownload = false\n')
    assert exit_code("run", str(job), "-q") == 0
    capsys.readouterr()
    assert exit_code("report", str(job), "--by", "category") == 0
    out = capsys.readouterr().out
    assert "[dim]sale" in out
