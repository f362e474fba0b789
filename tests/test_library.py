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


def test_written_model_reproduces_the_solve_bit_for_bit(tmp_path):
    """Coefficients are snapped to 12 significant digits, so the MPS file reads back to the very same
    doubles: HiGHS alone on the file takes the same branch-and-bound path (nodes) to the same optimum."""
    import highspy

    from formulations import build, build_sets, objective_vector
    from planner.optimize.backends import SolveOptions
    from planner.optimize.backends.highs import HighsBackend
    from planner.highs_runtime import run_highs

    sc = planner.scenario_from_dict(scenario(
        gpus=["G", "H"],
        regions={"A": {"gpus": [one_gpu(), one_gpu(gpu="H")]}, "B": {"gpus": [one_gpu(1.3), one_gpu(0.7, gpu="H")]}},
        carbon={"A": [123.4, 321.0], "B": [271.8, 31.4]},
        demand={("k", "o"): [37.3, 52.9]},
        profiles=[{**p, "gpu": g, "max_rps": p["max_rps"] * f} for g, f in (("G", 1.0), ("H", 1.37))
                  for p in [{"model": "m", "gpu": "G", "tp": 1, "pp": 1, "freq_mhz": 1000, "shape": "s",
                             "max_rps": 7.3, "ttft_ms": 100, "tbt_ms": 20, "busy_power_w": 311.1,
                             "idle_power_w": 97.3, "source": "t"}]],
        slots=2,
    ))
    md = build_sets(sc)
    lm, _ = build(md)
    obj = objective_vector(lm, md, "carbon")
    be = HighsBackend(lm, obj, names=True)
    be.write_model(str(tmp_path / "m.mps"))
    r = be.solve(SolveOptions(mip_gap=0.0, threads=1))
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(tmp_path / "m.mps"))
    h.setOptionValue("mip_rel_gap", 0.0)
    run_highs(h, 1)  # this thread's HiGHS scheduler may have been made for another size by an earlier test
    assert h.getInfo().objective_function_value == r.objective
    assert h.getInfo().mip_node_count == be.native.getInfo().mip_node_count
