"""The committed default scenario is exactly what ``tools/build_default.py`` derives from the raw data.

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
        [sys.executable, str(ROOT / "tools" / "build_default.py"), "--shared", str(SHARED), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    produced = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in DEFAULT.iterdir() if p.is_file())
    assert produced == committed
    for name in produced:
        a = (out / name).read_bytes()
        b = (DEFAULT / name).read_bytes()
        assert a == b, f"data/default/{name} differs from what tools/build_default.py produces: regenerate it"


def test_every_row_carries_its_source():
    for name in ("profiles.csv", "carbon.csv", "demand.csv", "electricity_price.csv"):
        df = pd.read_csv(DEFAULT / name)
        assert "source" in df.columns, name
        assert df["source"].notna().all() and (df["source"].str.len() > 10).all(), name


def test_default_scenario_loads_without_warnings(default_scenario):
    assert default_scenario.warnings == ()


def test_profile_rows_say_whether_measured_or_estimated(default_scenario):
    """A100-80GB (Splitwise) and H100-80GB (ML.ENERGY and Splitwise) rows come from the model
    calibrated on their measurements; H200 and L4 rows are spec-sheet estimates with a larger
    expected error. Every row carries an error."""
    from planner.perf import model as pm
    from planner.perf.model import SOURCE_ESTIMATED

    p = default_scenario.profiles
    measured = p["gpu"].isin(["A100-80GB", "H100-80GB"])
    assert (p.loc[measured, "source"] == p.loc[measured, "gpu"].map(pm.source_label)).all()
    assert set(p.loc[measured, "source"]) == {"calibrated model (Splitwise)",
                                              "calibrated model (ML.ENERGY v2/v3, Splitwise)"}
    assert (p.loc[~measured, "source"] == SOURCE_ESTIMATED).all()
    assert set(p["gpu"]) == {"A100-80GB", "H100-80GB", "H200", "L4"}
    assert p["expected_error"].notna().all()
    assert p.loc[~measured, "expected_error"].min() > p.loc[measured, "expected_error"].max() - 0.02


def test_carbon_and_cost_plans_differ_in_where_and_how(tmp_path):
    """One afternoon hour (15:00 UTC) of the default day: the carbon-optimal plan emits less and
    costs more than the cost-optimal one, and they serve from a different mix of regions and configs.
    (The note of issue 3 states the full-day totals.)"""
    import shutil

    import yaml

    import planner
    from planner.scenario.defaults import default_scenario_dir

    d = tmp_path / "d"
    shutil.copytree(default_scenario_dir(), d)
    doc = yaml.safe_load((d / "scenario.yaml").read_text())
    doc["horizon"] = {"start": "2023-06-15T15:00:00Z", "slot_minutes": 60, "slots": 1}
    (d / "scenario.yaml").write_text(yaml.safe_dump(doc))
    sc = planner.load_scenario(d)
    # measured at the p99 default (issue 11): cost plan 1,756 USD = 0.84 x the carbon plan's 2,089 USD;
    # the assertions below leave room beyond the 2 % gap
    carbon = planner.solve(sc, objective="carbon", mip_gap=0.02)
    cost = planner.solve(sc, objective="cost", mip_gap=0.02)
    for p in (carbon, cost):
        assert planner.check(p, sc).ok
    assert carbon.totals.carbon_kg < 0.8 * cost.totals.carbon_kg
    assert cost.totals.cost_usd < 0.9 * carbon.totals.cost_usd

    def mix(p, key):
        out = {}
        for dep in (x for s in p.slots for x in s.deployments):
            k = key(dep)
            out[k] = out.get(k, 0) + dep.gpus
        return out

    assert mix(carbon, lambda x: x.region) != mix(cost, lambda x: x.region)
    assert mix(carbon, lambda x: x.freq_mhz) != mix(cost, lambda x: x.freq_mhz)
