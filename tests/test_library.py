"""Library use: native models can be extended with the user's own constraints, and the plan honours them."""

import numpy as np
import pulp
import pyomo.environ as pyo
import pytest
from builders import scenario
from test_hand_instances import one_gpu

import planner


def two_regions():
    """Carbon optimum alone: both replicas in clean A (0.26 kWh x 0.1 = 0.026 kg per 8 req/s)."""
    return planner.scenario_from_dict(scenario(
        regions={"A": {"gpus": [one_gpu()]}, "B": {"gpus": [one_gpu()]}},
        carbon={"A": [100.0], "B": [400.0]},
    ))


def test_pyomo_user_constraint_is_honoured():
    """Forbid region A with a Pyomo constraint: the plan must move to B (0.104 kg)."""
    built = planner.build_model(two_regions(), objective="carbon", backend="pyomo")
    m = built.native
    assert isinstance(m, pyo.ConcreteModel)
    m.no_a = pyo.Constraint(expr=sum(m.replicas[k] for k in m.replicas if k[0] == "A") == 0)
    plan = built.solve(mip_gap=0)
    assert plan.objective.value == pytest.approx(0.104, rel=1e-6)
    assert {d.region for d in plan.slots[0].deployments} == {"B"}


def test_pulp_user_constraint_is_honoured():
    built = planner.build_model(two_regions(), objective="carbon", backend="pulp")
    prob = built.native
    assert isinstance(prob, pulp.LpProblem)
    a_vars = [v for v in prob.variables() if v.name.startswith("replicas__A_")]
    prob += pulp.lpSum(a_vars) == 0, "no_a"
    plan = built.solve(mip_gap=0)
    assert {d.region for d in plan.slots[0].deployments} == {"B"}


def test_highs_user_constraint_is_honoured():
    built = planner.build_model(two_regions(), objective="carbon", backend="highs")
    h = built.native
    blk = built.lm.block("replicas")
    a_cols = blk.cols[blk.index[:, 0] == built.scenario.regions.index("A")]
    h.addRow(0.0, 0.0, len(a_cols), a_cols.astype(np.int32), np.ones(len(a_cols)))
    plan = built.solve(mip_gap=0)
    assert {d.region for d in plan.slots[0].deployments} == {"B"}


def test_build_model_writes_exact_model(tmp_path):
    built = planner.build_model(two_regions(), objective="cost", backend="highs", names=True)
    built.write(tmp_path / "m.lp")
    text = (tmp_path / "m.lp").read_text()
    assert "replica_capacity" in text and "demand_served" in text
