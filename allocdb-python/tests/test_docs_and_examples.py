"""The quickstart of docs/python.md and the examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from allocdb.testing import LocalCluster

REPOSITORY = Path(__file__).resolve().parents[2]
QUICKSTART_ADDRESSES = '["127.0.0.1:3000", "127.0.0.1:3001", "127.0.0.1:3002"]'


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.S)


def test_quickstart_runs_as_written(cluster: LocalCluster, capsys: object) -> None:
    blocks = python_blocks(REPOSITORY / "docs" / "python.md")
    quickstart, asyncio_quickstart = blocks[0], blocks[1]
    assert len(quickstart.strip().splitlines()) <= 15
    ours = repr(cluster.addresses).replace("'", '"')
    for block in (quickstart, quickstart, asyncio_quickstart):  # twice: reruns work too
        assert QUICKSTART_ADDRESSES in block
        exec(compile(block.replace(QUICKSTART_ADDRESSES, ours), "docs/python.md", "exec"), {})


def run_example(name: str, *args: str, binary: Path) -> str:
    env = dict(os.environ, ALLOCDB_BIN=str(binary))
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "examples" / "python" / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seat_booking_example(allocdb_binary: Path) -> None:
    output = run_example("seat_booking.py", "--demo", binary=allocdb_binary)
    assert "alice holds seat 12: 200" in output
    assert "bob tries seat 12:   (409, {'error': 'resource_busy'})" in output
    assert "'state': 'active'" in output


def test_bench_example(allocdb_binary: Path) -> None:
    output = run_example(
        "bench.py", "--coroutines", "50", "--duration", "0.5", binary=allocdb_binary
    )
    match = re.search(r"ops_per_sec=(\d+)", output)
    assert match and int(match.group(1)) > 0, output
