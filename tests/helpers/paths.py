"""Where things are, whatever folder a test lives in."""

from __future__ import annotations

from pathlib import Path

#: The repository: ``pipeline`` subprocesses run here, ``jobs/`` holds the demo.
ROOT = Path(__file__).resolve().parents[2]
#: ``tests/data``: the wire examples (``runware/``) and the job the 0.1 code ran (``v01_job/``).
DATA = ROOT / "tests" / "data"
V01_JOB = DATA / "v01_job"
