"""Benchmark: `pipeline plan` on a generated 1,000,000-row Parquet manifest, with and without a ledger.

    uv run python benchmarks/plan_million.py            # 1,000,000 rows (default)
    uv run python benchmarks/plan_million.py --rows 200000

Generates under benchmarks/.data/ (gitignored), in a process of its own: a Parquet manifest shaped like a
catalog job (sku, category and locale passthrough; per-row quality/size overrides; URL, local-file and
reference-set references) and the same rows as CSV, a reference-sets file with real PNGs, and a ledger in
which the first half of the rows succeeded (a submitted and a succeeded line each). Then runs
`pipeline plan --json` in a fresh process per case, which reports its own peak RSS and CPU time
(getrusage), and prints those with the wall time; a 10,000-row plan measured in the same run is the
baseline (start-up cost: Python, polars, the CLI).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data" / "plan_million"
AT = "2026-11-23T10:00:00+00:00"


def _images(folder: Path) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, color in enumerate([(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 200, 40)]):
        name = f"ref{i}.png"
        Image.new("RGB", (32, 32), color).save(folder / name)
        names.append(f"refs/{name}")
    return names


def make_manifest(folder: Path, rows: int) -> Path:
    """A catalog-shaped manifest of ``rows`` rows (vectorised; a few seconds for a million)."""
    import polars as pl

    local = _images(folder / "refs")
    (folder / "sets.csv").write_text(
        "set_id,image\n"
        + "".join(f"set{i},{local[i % 4]}\nset{i},https://cdn.example.com/s{i}.png\n" for i in range(50))
    )
    i = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame({"n": i}).select(
        id=pl.format("row-{}", pl.col("n")),
        sku=pl.format("SKU-{}", pl.col("n") // 4),
        category=pl.lit("furniture"),
        locale=pl.when(pl.col("n") % 2 == 0).then(pl.lit("en-US")).otherwise(pl.lit("de-DE")),
        prompt=pl.format(
            "Product photo of item {} on a plain background, soft light, catalog style", pl.col("n")
        ),
        quality=pl.when(pl.col("n") % 10 == 0).then(pl.lit("low")).otherwise(pl.lit(None, dtype=pl.String)),
        width=pl.when(pl.col("n") % 7 == 0).then(pl.lit(1536)).otherwise(pl.lit(None, dtype=pl.Int64)),
        reference_set=pl.when(pl.col("n") % 3 == 0).then(pl.format("set{}", pl.col("n") % 50)),
        reference_images=pl.when(pl.col("n") % 5 == 0)
        .then(pl.concat_list(pl.format("https://cdn.example.com/p{}.png", pl.col("n"))))
        .when(pl.col("n") % 5 == 1)
        .then(pl.concat_list(pl.lit(local[1]))),
    )
    path = folder / "manifest.parquet"
    frame.write_parquet(path)
    # The same rows as CSV (references `|`-separated), to compare the formats.
    frame.with_columns(pl.col("reference_images").list.join("|")).write_csv(folder / "manifest.csv")
    return path


def write_spec(folder: Path, name: str, manifest: Path, out: str) -> Path:
    spec = folder / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\nmanifest = "{manifest.name}"\nreference_sets = "sets.csv"\noutput_dir = "{out}"\n'
    )
    return spec


def make_ledger(spec_path: Path, fraction: float = 0.5) -> int:
    """A ledger where the first ``fraction`` of the accepted rows succeeded (submitted + succeeded)."""
    import polars as pl

    from pipeline.config.jobspec import load_job_spec
    from pipeline.manifest.reader import open_manifest

    spec = load_job_spec(spec_path)
    manifest = open_manifest(spec)
    keys = pl.concat(
        [f.filter(pl.col("_reason").is_null()).select("_id", "_fp") for f in manifest.frames(100_000)]
    )
    keys = keys.head(int(keys.height * fraction))
    task = pl.format("{}-0000-5000-8000-000000000001", pl.col("_fp").str.slice(0, 8))
    common = {"id": pl.col("_id"), "fingerprint": pl.col("_fp"), "task_uuid": task, "run_id": pl.lit("r1")}
    sub = keys.select(event=pl.lit("submitted"), **common, attempt=pl.lit(1), at=pl.lit(AT))
    ok = keys.select(event=pl.lit("succeeded"), **common, cost_usd=pl.lit(0.011), at=pl.lit(AT))
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    ledger = spec.out_dir / "ledger.jsonl"
    head = {
        "event": "job",
        "version": 1,
        "namespace": "6f1c1a52-0000-4000-8000-000000000000",
        "job": spec.name,
    }
    with ledger.open("w") as f:
        f.write(
            json.dumps({**head, "at": AT})
            + "\n"
            + json.dumps({"event": "run", "run_id": "r1", "at": AT})
            + "\n"
        )
    with ledger.open("ab") as out:
        sub.write_ndjson(out)
        ok.write_ndjson(out)
    return keys.height * 2 + 2


# Runs the CLI like the console script and reports the process's own peak RSS (exact, in KiB on Linux).
_CHILD = """
import resource, sys
from pipeline.cli import main
try:
    main(sys.argv[1:])
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(f"\\nmaxrss_kib={usage.ru_maxrss} cpu_s={usage.ru_utime + usage.ru_stime}\\n")
"""


def measure(spec: Path) -> tuple[float, float, float, dict[str, object]]:
    """(wall s, CPU s, peak RSS MiB, the --json summary) of `pipeline plan` in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "plan", str(spec), "--json"], capture_output=True, check=False
    )
    wall = time.perf_counter() - started
    err = done.stderr.decode()
    if done.returncode not in (0, 1):
        raise SystemExit(f"plan failed ({done.returncode}): {err}")
    maxrss, cpu = err.rsplit("maxrss_kib=", 1)[1].split()[:2]
    return wall, float(cpu.removeprefix("cpu_s=")), int(maxrss) / 1024, json.loads(done.stdout)


def generate(rows: int) -> None:
    """Write the manifests, reference sets and ledger (in its own process: see ``main``)."""
    small_dir, big_dir = DATA / "small", DATA / f"rows-{rows}"
    for folder in (small_dir, big_dir):
        folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    write_spec(small_dir, "baseline", make_manifest(small_dir, 10_000), "out")
    big_manifest = make_manifest(big_dir, rows)
    write_spec(big_dir, "fresh", big_manifest, "out-fresh")
    write_spec(big_dir, "fresh-csv", big_manifest.with_suffix(".csv"), "out-fresh-csv")
    lines = make_ledger(write_spec(big_dir, "resumed", big_manifest, "out-resumed"))
    print(f"generated {rows:,} rows + a {lines:,}-line ledger in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"manifest: {big_manifest} ({big_manifest.stat().st_size / 2**20:.1f} MiB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.rows)
        return
    # Linux keeps a process's peak RSS across fork+exec, so this parent stays small (no polars here)
    # and the data is generated in a child of its own.
    subprocess.run([sys.executable, __file__, "--generate", "--rows", str(args.rows)], check=True)
    big_dir = DATA / f"rows-{args.rows}"
    cases = [
        ("10k rows (baseline)", DATA / "small" / "baseline.toml"),
        (f"{args.rows:,} rows, no ledger", big_dir / "fresh.toml"),
        (f"{args.rows:,} rows as CSV, no ledger", big_dir / "fresh-csv.toml"),
        (f"{args.rows:,} rows, ledger with half done", big_dir / "resumed.toml"),
    ]
    results = []
    for label, spec in cases:
        wall, cpu, rss, summary = measure(spec)
        results.append((label, wall, rss))
        rows = summary["rows"]
        print(
            f"{label:40s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  peak RSS {rss:7.1f} MiB  rows {rows}",
            flush=True,
        )
    base = results[0][1]
    print(
        "\nwall time / baseline (same run): " + ", ".join(f"{r[0]}: {r[1] / base:.1f}x" for r in results[1:])
    )


if __name__ == "__main__":
    main()
