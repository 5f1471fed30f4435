"""`make bench` keeps working: a tiny run of the benchmark prints every figure of issue 11's table with a ratio.
Only that it runs and what it prints are checked; how fast anything is, never (it is a benchmark, not a test)."""
import re
import subprocess
import sys
from pathlib import Path

import pg_support

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pages import ROWS  # noqa: E402


def _postgresql_installed() -> bool:
    try:
        pg_support.server_binaries()
    except RuntimeError:
        return False
    return True


def test_quick_bench_prints_every_row_with_a_ratio():
    run = subprocess.run([sys.executable, "benchmarks/bench_pages.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert ["what", "ratio", "target", "measured"] in [line.split() for line in lines], run.stdout
    for what in ROWS:
        row = next((line for line in lines if line.startswith(what + "  ")), None)
        assert row is not None, f"no row {what!r} in:\n{run.stdout}"
        ratio = row[len(what):].split()[0]
        if what.startswith("PostgreSQL") and not _postgresql_installed():
            assert "skipped" in row, row
            continue
        assert re.fullmatch(r"\d+(\.\d+)?×?", ratio), f"{what!r} has no measured ratio: {row}"
