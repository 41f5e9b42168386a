"""Hostile inputs on the newer surfaces (issue 25): one bad photo never costs a run, every bad input is
one ``error:`` line (exit 2) or a per-item error, and outputs are checked before any work."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fashionlens.cli import app
from fashionlens.errors import FashionlensError
from fashionlens.inference.inputs import ListingError, read_listing

runner = CliRunner()


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# ----------------------------------------------------------------------------- listings


def test_an_unreadable_listing_exits_2_every_time_never_sigabrt(tmp_path):
    """pyarrow's CSV thread pool, left behind by a parse error, aborted about 5 runs of 12 at exit (134)."""
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for _ in range(8):
        proc = subprocess.run([sys.executable, "-m", "fashionlens.cli", "predict", str(tmp_path / "bin.csv")],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "terminate called" not in proc.stderr and proc.stderr.startswith(f"error: {tmp_path / 'bin.csv'}: ")


@pytest.mark.parametrize("content, message", [
    ("", "empty.csv: empty file (0 bytes)"),
    ("path,path\na.jpg,b.jpg\n", "empty.csv: 2 columns named 'path'"),
])  # fmt: skip
def test_empty_listing_and_two_path_columns_are_listing_errors(tmp_path, content, message):
    (tmp_path / "empty.csv").write_text(content)
    with pytest.raises(ListingError, match=re.escape(message)):
        read_listing(str(tmp_path / "empty.csv"))
    assert issubclass(ListingError, FashionlensError)
    line = _one_error_line(runner.invoke(app, ["predict", str(tmp_path / "empty.csv")]))
    assert message in line
