"""The examples run end to end (on a small generated scenario, to keep the suite fast)."""

import subprocess
import sys
from pathlib import Path

import pytest

from planner.scenario.generate import generate_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("ex")
    return generate_scenario(d, regions=3, slots=2, gpus=2, models=1, classes=2, seed=1)


def run(*args):
    p = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_carbon_vs_cost(small):
    out = run("examples/carbon_vs_cost.py", small)
    assert "carbon-optimal" in out and "cost-optimal" in out and "VIOLATED" not in out


def test_budget_sweep(small):
    out = run("examples/budget_sweep.py", small, "--steps", "2", "--time-limit", "60")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert "min cost" in lines[1] and "min carbon" in lines[-1]
    assert len(lines) == 5
