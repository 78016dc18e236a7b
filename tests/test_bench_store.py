"""bench_store still runs: a store of 200 instances, one round, every row of the table measured.

The benchmark (``tests/benchmarks/bench_store.py``) is run on demand and outside the suite;
this runs it as a user would at a tiny size, so that a renamed entry point of the window or
the store shows up here rather than on the day someone needs the figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The "what" column of every row bench_store prints (tests/benchmarks/bench_store.py, ROWS).
ROWS = (
    "open the store after a crash",
    "open the store after a clean close",
    "Local store tab → patient list painted",
    "first keystroke of the name filter: window frozen",
    "first keystroke of the name filter: until the list shows",
    "clearing the filter: longest stall",
    "browser refresh (every 400 ms) while images arrive: GUI thread",
    "until its rows are applied",
    "the GUI thread busy meanwhile",
    'first "Local" column look-up of 500 result studies: cells filled',
    "delete a study",
    "window construction",
    "import a folder",
    "1M instances at that rate",
    "window memory (RSS)",
    "after the last round's",
)


@pytest.mark.timeout(120)
def test_bench_store_measures_every_row_at_a_tiny_size(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tests.benchmarks.bench_store", "--sizes", "200",
            "--rounds", "1", "--import-files", "50", "--import-rounds", "1",
            "--arrivals", "80", "--arrival-seconds", "1", "--workdir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=110, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("\naction") :]
    assert "200 instances" in table.splitlines()[1]
    for what in ROWS:
        line = next((line for line in table.splitlines() if what in line), None)
        assert line is not None, f"no row {what!r} in:\n{table}"
        cells = re.split(r"\s{2,}", line.strip())
        assert re.match(r"\d", cells[1]), f"row {what!r} has no figure:\n{table}"
    # The stores it built are reused, keyed by the index schema.
    assert any(p.name.endswith(".done") for p in tmp_path.iterdir())
