"""Benchmark: the nightly run of a catalog job whose state already holds N generated rows, 1% changed.

    uv run python benchmarks/state_million.py                      # 1,000,000 rows, today's code
    uv run python benchmarks/state_million.py --rows 100000        # a quick look
    uv run python benchmarks/state_million.py --rows 100000 --code before   # the 0.1 code
    uv run python benchmarks/state_million.py --table              # figures saved so far, as Markdown
    uv run python benchmarks/state_million.py --only plan          # one step on a fresh copy (not saved)
    uv run python benchmarks/state_million.py --only run --only results --only report   # in order, one copy

Generates under benchmarks/.data/state_million/ (gitignored, kept between invocations): a catalog-shaped
Parquet manifest of N rows and a copy with 1% of the prompts edited (``state_data.py manifest``), and the
job's state in which every row of the original manifest is generated (``state_data.py state``: realistic
events recorded with the store, or with the 0.1 ``LedgerWriter`` for the 0.1 code; generated once, then
copied into a fresh output dir for each measurement). Then, each in a fresh process that reports its own
peak RSS and CPU time (getrusage), it measures on the edited manifest: ``plan --json``, ``status --json``,
``run --json`` (embedded zero-latency sandbox, downloads off: it sends the 1% changed rows), ``status``
again, ``results`` and ``report --format json``; and, first, in the same invocation, ``run`` of a FRESH
10,000-row job of the same shape (the baseline the issue's 1.5x target is measured against). Last, the
bytes of state per generated row, before and after ``Store.compact()``.

``--code before`` runs the same cases with the 0.1 checkout's Python (``--v01``, default /tmp/v01-bench:
``git worktree add --detach /tmp/v01-bench f5be495``, then ``uv sync`` in it), whose state is a
``ledger.jsonl``. Today's code is measured with whatever state it writes: the fresh baseline run shows
whether that is ``state.db`` or a 0.1 ledger, and the generated state follows.

The parent process stays small (no polars, no pipeline): Linux carries a process's peak RSS across
fork+exec, so every heavy step runs in a child.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data" / "state_million"
FRESH_ROWS = 10_000
CONCURRENCY = 32

# Issue 9's targets for 1,000,000 rows with 1% changed (seconds, MiB, ratio, bytes).
TARGETS = {
    "run / fresh 10k run": 1.5,
    "run peak MiB": 600,
    "status s": 1.0,
    "plan s": 6.0,
    "plan peak MiB": 600,
    "report s": 3.0,
    "state bytes / row": 400,
}

# Runs the CLI like the console script; reports its own peak RSS and CPU time, and its children's.
_CHILD = """
import resource, sys
from pipeline.cli import main
try:
    main(sys.argv[1:])
finally:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    sys.stderr.write(f"\\n@@usage {max(me.ru_maxrss, kids.ru_maxrss)} {cpu}\\n")
"""


@dataclass
class Case:
    label: str
    command: str
    wall_s: float
    cpu_s: float
    peak_mib: float
    exit_code: int
    summary: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Code:
    """A checkout to measure: its name, Python and default model."""

    name: str  # "after" (today's code) or "before" (0.1)
    python: str
    root: Path
    model: str | None  # None: the job spec names none


def spec_text(name: str, manifest: str, out: str, code: Code) -> str:
    model = f'[defaults]\nmodel = "{code.model}"\n' if code.model else ""
    return (
        f'name = "{name}"\nmanifest = "{manifest}"\nreference_sets = "sets.csv"\noutput_dir = "{out}"\n'
        f'[provider]\nprofile = "sandbox"\n{model}[limits]\nconcurrency = {CONCURRENCY}\n'
        "[output]\ndownload = false\n"
    )


def child(code: Code, *args: str) -> None:
    """Run ``state_data.py`` (or a snippet) with ``code``'s Python, checked."""
    subprocess.run([code.python, *args], cwd=code.root, check=True)


def manifests(rows: int) -> Path:
    """The folder of the N-row manifests (written by today's code, shared by both checkouts)."""
    folder = DATA / f"manifest-{rows}"
    if not (folder / "manifest.parquet").exists():
        started = time.perf_counter()
        script = [str(HERE / "state_data.py"), "manifest", str(folder), "--rows", str(rows)]
        subprocess.run([sys.executable, *script], check=True)
        print(f"manifests of {rows:,} rows written in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def measure(code: Code, label: str, *argv: str) -> Case:
    """One CLI command in a fresh process: wall, CPU, peak RSS, exit code and its JSON summary."""
    started = time.perf_counter()
    done = subprocess.run(
        [code.python, "-c", _CHILD, *argv], cwd=code.root, capture_output=True, check=False, text=True
    )
    wall = time.perf_counter() - started
    head, _, usage = done.stderr.rpartition("@@usage ")
    maxrss, cpu = usage.split()[:2] if usage else ("0", "0")
    try:
        summary = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        summary = {"stdout": done.stdout[-300:]}
    slug = "-".join("".join(c if c.isalnum() else " " for c in label).split())
    log = DATA / "logs" / f"{code.name}-{slug}.stderr"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stderr)
    if done.returncode not in (0, 1) or (not summary and argv[-1] == "--json"):
        summary["stderr"] = head.strip()[-600:]
    case = Case(label, " ".join(argv[:1]), wall, float(cpu), int(maxrss) / 1024, done.returncode, summary)
    print(
        f"  {label:34s} wall {wall:7.2f} s  CPU {case.cpu_s:7.2f} s  peak {case.peak_mib:7.1f} MiB  "
        f"exit {done.returncode}  {_brief(summary)}",
        flush=True,
    )
    return case


def _brief(summary: dict[str, object]) -> str:
    keys = ("rows", "this_run", "images", "spent_usd", "total", "stderr", "stdout")
    return json.dumps({k: summary[k] for k in keys if k in summary})[:400]


def state_files(out: Path) -> list[Path]:
    return [p for p in [*sorted(out.glob("state.db*")), out / "ledger.jsonl"] if p.exists()]


def state_bytes(out: Path) -> int:
    """Bytes of the job's state: state.db (+ its WAL) if there is one, else the 0.1 ledger."""
    db = [p for p in state_files(out) if p.name.startswith("state.db")]
    return sum(p.stat().st_size for p in (db or state_files(out)))


def fresh_baseline(code: Code) -> tuple[Case, str]:
    """The fresh 10,000-row run, and the state format it left ("db" or "jsonl")."""
    folder = manifests(FRESH_ROWS)
    spec = folder / f"fresh-{code.name}.toml"
    spec.write_text(spec_text("fresh", "manifest-orig.parquet", f"out-fresh-{code.name}", code))
    out = folder / f"out-fresh-{code.name}"
    shutil.rmtree(out, ignore_errors=True)
    case = measure(code, f"fresh {FRESH_ROWS:,}-row run (baseline)", "run", str(spec), "--json")
    return case, "db" if (out / "state.db").exists() else "jsonl"


def prepared_job(rows: int, code: Code, fmt: str) -> tuple[Path, Path]:
    """(spec, output dir) of the N-row job: its generated state and results table (as the last run left
    them: a nightly run finds both) copied into a fresh output dir."""
    folder = manifests(rows)
    pristine = folder / f"pristine-{code.name}-{fmt}"
    gen = folder / f"gen-{code.name}.toml"
    gen.write_text(spec_text("catalog", "manifest-orig.parquet", pristine.name, code))
    if not (pristine / "done").exists():
        if not (pristine / "state.db").exists():  # a state.db there is a generation to resume
            shutil.rmtree(pristine, ignore_errors=True)
        child(code, str(HERE / "state_data.py"), "state", str(gen), "--format", fmt)
        (pristine / "done").touch()
    if not (pristine / "results.parquet").exists():
        started = time.perf_counter()
        child(code, "-m", "pipeline", "results", "-q", str(gen))
        print(f"  results table of the generated state: {time.perf_counter() - started:.1f} s", flush=True)
    spec = folder / f"{code.name}.toml"
    out = folder / f"out-{code.name}"
    spec.write_text(spec_text("catalog", "manifest.parquet", out.name, code))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for path in pristine.iterdir():
        if path.is_file() and path.name != "done":
            shutil.copy2(path, out / path.name)
    return spec, out


def compact(code: Code, out: Path) -> int | None:
    """State bytes after ``Store.compact()`` (None for a 0.1 ledger)."""
    if not (out / "state.db").exists():
        return None
    snippet = "import sys; from pipeline.state import Store\nwith Store.open(sys.argv[1]) as s: s.compact()"
    child(code, "-c", snippet, str(out / "state.db"))
    return state_bytes(out)


def bench(rows: int, code: Code) -> dict[str, object]:
    load_before = os.getloadavg()
    print(f"== {code.name} ({code.root}), {rows:,} rows, 1% changed; load {load_before[0]:.1f}", flush=True)
    baseline, fmt = fresh_baseline(code)
    print(f"  state format: {fmt}", flush=True)
    spec, out = prepared_job(rows, code, fmt)
    generated = state_bytes(out)
    s = str(spec)
    cases = [
        baseline,
        measure(code, "CLI start-up (status --help)", "status", "--help"),
        measure(code, "plan --json", "plan", s, "--json"),
        measure(code, "status --json", "status", s, "--json"),
        measure(code, "run --json (1% changed)", "run", s, "--json"),
        measure(code, "status --json (after the run)", "status", s, "--json"),
        measure(code, "results", "results", s),
        measure(code, "report --format json", "report", s, "--format", "json"),
    ]
    after_run = state_bytes(out)
    compacted = compact(code, out)
    figures = {
        "code": code.name,
        "rows": rows,
        "state_format": fmt,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_before": load_before[0],
        "load_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "cases": [asdict(c) for c in cases],
        "state_bytes_generated": generated,
        "state_bytes_after_run": after_run,
        "state_bytes_compacted": compacted,
    }
    for label, size in (("generated", generated), ("after the run", after_run), ("compacted", compacted)):
        if size is not None:
            print(f"  state {label:14s} {size / 2**20:9.1f} MiB  {size / rows:7.0f} bytes / row", flush=True)
    print("  " + "; ".join(f"{k}: {v}" for k, v in headline(figures).items()), flush=True)
    path = DATA / f"figures-{code.name}-{rows}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"  saved {path.relative_to(ROOT)}", flush=True)
    return figures


def only(rows: int, code: Code, steps: list[str]) -> None:
    """Some steps (``plan``, ``run``...), in the order given, on one fresh copy of the generated state: no
    baseline run, nothing saved."""
    fmt = "db" if code.name == "after" else "jsonl"
    names = ", ".join(steps)
    print(f"== {code.name} ({code.root}), {rows:,} rows, 1% changed, {names} only; state format: {fmt}")
    spec, _ = prepared_job(rows, code, fmt)
    for step in steps:
        label, command, *extra = ONLY[step]
        measure(code, label, command, str(spec), *extra)


# --only: the steps that run alone (label, command, arguments after the spec), measured as ``bench`` does.
ONLY = {
    "plan": ("plan --json", "plan", "--json"),
    "run": ("run --json (1% changed)", "run", "--json"),
    "status": ("status --json", "status", "--json"),
    "results": ("results", "results"),
    "report": ("report --format json", "report", "--format", "json"),
}


def headline(figures: dict[str, Any]) -> dict[str, float]:
    """The figures the issue's targets name."""
    cases = {c["label"]: c for c in figures["cases"]}
    run, fresh = cases["run --json (1% changed)"], cases[f"fresh {FRESH_ROWS:,}-row run (baseline)"]
    rows, after_run = int(figures["rows"]), int(figures["state_bytes_after_run"])
    compacted = figures["state_bytes_compacted"] or after_run
    return {
        "run s": round(run["wall_s"], 1),
        "fresh 10k run s": round(fresh["wall_s"], 1),
        "run / fresh 10k run": round(run["wall_s"] / fresh["wall_s"], 2),
        "run peak MiB": round(run["peak_mib"]),
        "CLI start-up s": round(
            cases.get("CLI start-up (status --help)", {"wall_s": float("nan")})["wall_s"], 2
        ),
        "status s": round(cases["status --json"]["wall_s"], 2),
        "status peak MiB": round(cases["status --json"]["peak_mib"]),
        "plan s": round(cases["plan --json"]["wall_s"], 2),
        "plan peak MiB": round(cases["plan --json"]["peak_mib"]),
        "results s": round(cases["results"]["wall_s"], 2),
        "report s": round(cases["report --format json"]["wall_s"], 2),
        "state bytes / row, after the run": round(after_run / rows),
        "state bytes / row": round(compacted / rows),
    }


def table() -> None:
    """Markdown of every saved figures file: one column per (code, rows), the target beside."""
    saved = [json.loads(p.read_text()) for p in sorted(DATA.glob("figures-*.json"))]
    saved.sort(key=lambda f: (f["rows"], f["code"] != "before"))
    heads = [headline(f) for f in saved]
    print("| figure | " + " | ".join(f"{f['code']}, {f['rows']:,} rows" for f in saved) + " | target (1M) |")
    print("|---|" + "---:|" * len(saved) + "---:|")
    for key in heads[0] if heads else ():
        target = TARGETS.get(key)
        print(
            f"| {key} | "
            + " | ".join(str(h[key]) for h in heads)
            + f" | {'' if target is None else target} |"
        )
    for f in saved:
        load = f"load {f['load_before']:.1f} -> {f['load_after']:.1f}"
        print(f"- {f['code']}, {f['rows']:,} rows: {f['date']}, {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--code", choices=("after", "before", "both"), default="after")
    parser.add_argument("--v01", type=Path, default=Path("/tmp/v01-bench"), help="the 0.1 checkout")
    parser.add_argument("--table", action="store_true", help="print the saved figures as Markdown")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(ONLY),
        help="run only this step (repeat for more, run in order on one copy; figures not saved)",
    )
    args = parser.parse_args()
    if args.table:
        table()
        return
    DATA.mkdir(parents=True, exist_ok=True)
    codes = {
        "after": Code("after", sys.executable, ROOT, None),
        "before": Code("before", str(args.v01 / ".venv" / "bin" / "python"), args.v01, "openai:1@2"),
    }
    for name in ("before", "after") if args.code == "both" else (args.code,):
        if args.only:
            only(args.rows, codes[name], args.only)
        else:
            bench(args.rows, codes[name])


if __name__ == "__main__":
    main()
