"""Every script in benchmarks/ compiles on this Python, and the real-data
checks skip cleanly without the prepared data."""

import glob
import os
import py_compile
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_script_compiles(script, tmp_path):
    py_compile.compile(script, cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_real_data_checks_skip_without_data(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "real_data.py"), "--data-dir", str(tmp_path),
         "--checks", "mnist", "loso"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| mnist | skipped: mnist not in" in result.stdout
    assert "| loso | skipped: spoken_digit not in" in result.stdout
