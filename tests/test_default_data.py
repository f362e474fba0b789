"""The committed default scenario is exactly what ``data/build_default.py`` derives from the raw data.

When ``../shared/data`` is present, the script is run into a temporary folder and every output file
must match the committed one byte for byte; a hand edit of a derived table, or a change to the
derivation without regenerating, fails here. The remaining tests check properties of the committed
tables that hold whether or not the raw data is present.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "data" / "default"


@pytest.mark.skipif(not (SHARED / "README.md").is_file(), reason="raw shared data not present")
def test_committed_tables_match_the_script(tmp_path):
    out = tmp_path / "default"
    r = subprocess.run(
        [sys.executable, str(ROOT / "data" / "build_default.py"), "--shared", str(SHARED), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    produced = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in DEFAULT.iterdir() if p.is_file())
    assert produced == committed
    for name in produced:
        a = (out / name).read_bytes()
        b = (DEFAULT / name).read_bytes()
        assert a == b, f"data/default/{name} differs from what data/build_default.py produces: regenerate it"


def test_every_row_carries_its_source():
    for name in ("profiles.csv", "carbon.csv", "demand.csv", "electricity_price.csv"):
        df = pd.read_csv(DEFAULT / name)
        assert "source" in df.columns, name
        assert df["source"].notna().all() and (df["source"].str.len() > 10).all(), name


def test_default_scenario_loads_without_warnings(default_scenario):
    assert default_scenario.warnings == ()
