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
from test_derive_landmarks import _tiny_ccp

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


# ----------------------------------------------------------------------------- derive-landmarks


def test_a_truncated_photo_is_skipped_and_counted_or_fails_naming_it(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=4)
    photo = ccp / "photos" / "0003.jpg"
    photo.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])  # truncated, its header intact
    for workers in ("1", "2"):
        out = tmp_path / f"tree{workers}"
        result = runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(out), "--workers", workers])
        assert result.exit_code == 0, result.output
        assert f"skipped bad photo: {photo}: cannot decode image" in result.output
        assert "3 photos -> " in result.output and "0 bad masks, 1 bad photos" in result.output
        assert (out / "Anno" / "list_landmarks.txt").is_file() and not list((out / "img").glob("0003_*"))
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "f"), "--bad", "fail"]))
    assert line.startswith(f"error: {photo}: cannot decode image")
    assert not (tmp_path / "f" / "Anno").exists()


def test_derive_output_is_checked_before_any_work(tmp_path, monkeypatch):
    import fashionlens.data.derive_tree as derive_tree

    ccp = _tiny_ccp(tmp_path / "ccp", n=2)
    monkeypatch.setattr(derive_tree, "_run", lambda *a: pytest.fail("derivation started with an unusable output"))
    (tmp_path / "file").write_text("a file where OUT should be")
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "file")]))
    assert line == f"error: output folder {tmp_path / 'file'} is not writable: it is a file, not a folder"
    real_write = type(tmp_path).write_bytes

    def read_only(path, data):
        if path.name.startswith(".write-test"):
            raise PermissionError(13, "Permission denied")
        return real_write(path, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", read_only)
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "ro")]))
    assert line == f"error: output folder {tmp_path / 'ro'} is not writable: Permission denied"


def test_nothing_derived_is_an_error_not_an_empty_tree(tmp_path):
    ccp = _tiny_ccp(tmp_path / "ccp", n=2)
    for photo in (ccp / "photos").iterdir():
        photo.write_bytes(b"not a jpeg")
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "a")]))
    assert line == "error: nothing derived: all 2 photos were skipped (0 bad masks, 2 bad photos)"
    assert not (tmp_path / "a" / "Anno").exists()
    for mask in (ccp / "annotations" / "pixel-level").iterdir():
        mask.unlink()
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "b")]))
    assert line == f"error: {ccp / 'annotations' / 'pixel-level'}: no .mat masks: nothing to derive " \
                   "(expected CCP's pixel-level annotations)"
    (ccp / "label_list.mat").unlink()
    line = _one_error_line(runner.invoke(app, ["data", "derive-landmarks", str(ccp), str(tmp_path / "c")]))
    assert line == f"error: {ccp / 'label_list.mat'}: file not found"
