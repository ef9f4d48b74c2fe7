"""The code base stays ruff-clean (ruff.toml: line length 100, single quotes, import order)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name('ruff')
    done = subprocess.run([str(ruff), 'check', '--no-cache', str(ROOT)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
