"""Safe numerics: values below the planner's resolution, implausible magnitudes, fast refusal of
impossible limits, and verification of the solver's answer. Hand instances, optimum in each docstring."""

from __future__ import annotations

import time

import numpy as np
import pytest
from builders import profile, scenario
from helpers import solve_checked

import planner
from planner.errors import NumericalError
from planner.scenario.schema import RATE_RESOLUTION


def test_profile_row_below_resolution_cannot_serve():
    """GPU H serves 1e-8 req/s per replica at 0.001 USD/h (100,000 available); G serves 10 req/s at
    1 USD/h. Demand 8 req/s, cost objective. H's row is below 1e-6 req/s: treated as unable to serve
    (else solver noise times 1/mu = 1e8 would become replicas), so the optimum is one G: 1 USD,
    and the plan's warnings name H's row."""
    doc = scenario(
        regions={"A": {"pue": 1.0, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0},
                                            {"type": "H", "count": 100_000, "price_usd_per_gpu_hour": 0.001}]}},
        gpus=["G", "H"], profiles=[profile(gpu="G"), profile(gpu="H", max_rps=1e-8)])
    plan, _ = solve_checked(doc, "cost")
    assert plan.objective.value == pytest.approx(1.0)
    assert [(d.gpu, d.replicas) for d in plan.slots[0].deployments] == [("G", 1)]
    assert len(plan.warnings) == 1 and "H" in plan.warnings[0] and "1e-08" in plan.warnings[0]


def test_demand_below_resolution_is_named_not_served_silently():
    """Slot 0 demands 8 req/s, slot 1 1e-8 req/s. Slot 1's demand is below the resolution: not planned
    (no replica in slot 1), named in the warnings, and not counted as served: served requests are
    8 x 3600 = 28,800 exactly."""
    doc = scenario(demand={("k", "o"): [8.0, 1e-8]}, slots=2)
    plan, _ = solve_checked(doc, "cost")
    assert plan.slots[1].deployments == []
    assert plan.totals.served_requests == pytest.approx(28_800.0)
    assert any("1e-08 req/s" in w for w in plan.warnings)
    assert RATE_RESOLUTION == 1e-6


@pytest.mark.parametrize("field, value", [("gco2_per_kwh", 1e308), ("gco2_per_kwh", 2e5)])
def test_implausible_table_values_are_refused_with_the_row(field, value):
    doc = scenario()
    doc["carbon_intensity"][0][field] = value
    with pytest.raises(planner.ScenarioError) as e:
        planner.scenario_from_dict(doc)
    assert "carbon_intensity[0]" in str(e.value) and "plausible maximum" in str(e.value)


@pytest.mark.parametrize("opt", [{"budget_usd": float("inf")}, {"budget_usd": float("nan")}, {"budget_usd": 1e300}])
def test_non_finite_or_absurd_options_are_refused(opt):
    with pytest.raises(planner.ScenarioError):
        planner.scenario_from_dict(scenario(options=opt))


def test_budget_below_the_lp_bound_is_refused_at_once():
    """One G at 1 USD/h serves 10 req/s (max utilisation 1); demand 8 req/s for one hour. The LP
    relaxation's least cost is 0.8 USD (0.8 of a replica); the integer optimum is 1 USD.
    A budget of 0.5 USD is below the LP bound: refused before any MILP (method 'bound'). A budget of
    0.9 USD passes that test (0.8 <= 0.9) but no integer plan meets it: the elastic explanation says
    serving costs at least 1 USD."""
    sc = planner.scenario_from_dict(scenario())
    t0 = time.perf_counter()
    with pytest.raises(planner.InfeasibleError) as e:
        planner.solve(sc, "carbon", budget_usd=0.5)
    assert time.perf_counter() - t0 < 10
    ex = e.value.explanation
    assert ex.method == "bound" and ex.findings[0].data["min_cost_usd"] == pytest.approx(0.8)
    with pytest.raises(planner.InfeasibleError) as e:
        planner.solve(sc, "carbon", budget_usd=0.9)
    assert e.value.explanation.method == "elastic"
    assert e.value.explanation.findings[0].data["min_cost_usd"] == pytest.approx(1.0)


def test_coupled_whole_model_without_time_limit_gets_the_default():
    """Slot rounds keep no limit (results independent of the machine's speed); the whole-model MILP
    of a budget solve is bounded by DEFAULT_COUPLED_TIME_LIMIT."""
    from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT

    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [8.0, 8.0]}, slots=2))
    assert planner.solve(sc, "carbon", budget_usd=5.0).solver.time_limit is None
    whole = planner.solve(sc, "carbon", budget_usd=5.0, decompose=False)
    assert whole.solver.time_limit == DEFAULT_COUPLED_TIME_LIMIT


def test_verification_catches_an_answer_that_does_not_hold():
    """A solution with one demand row off by 1 (8 req/s routed as 7) is a NumericalError naming the row,
    as is an objective below the proven bound."""
    from formulations import build, build_sets, objective_vector
    from planner.optimize.extract import verify_solution

    sc = planner.scenario_from_dict(scenario())
    md = build_sets(sc)
    lm, v = build(md)
    obj = objective_vector(lm, md, "cost")
    be = planner.build_model(sc, objective="cost")
    r = be.backend.solve(planner.optimize.backends.SolveOptions(mip_gap=0.0))
    x = r.x.copy()
    verify_solution(lm, x, r.bound, obj)  # the true answer holds
    bad = x.copy()
    bad[v.x["col"].to_numpy()[0]] -= 1.0
    with pytest.raises(NumericalError, match="demand_served"):
        verify_solution(lm, bad, r.bound, obj)
    with pytest.raises(NumericalError, match="below the bound"):
        verify_solution(lm, x, float(obj @ x) + 1.0, obj)
    with pytest.raises(NumericalError, match="non-finite"):
        verify_solution(lm, np.full_like(x, np.nan), None, obj)


def test_a_failed_slot_in_a_pricing_round_does_not_poison_the_tie_break(monkeypatch):
    """Binding budget (hand instance of test_binding_budget: optimum 0.13 kg at 11 USD). A slot that
    errors in one Lagrangian pricing round cancels that round only: the plan still checks, with the
    hand optimum, and no NaN reaches it."""
    import planner.optimize.decompose as dec

    def one_gpu(price):
        return {"type": "G", "count": 10, "price_usd_per_gpu_hour": price}

    doc = scenario(regions={"A": {"gpus": [one_gpu(10.0)]}, "B": {"gpus": [one_gpu(1.0)]}},
                   carbon={"A": [100.0, 100.0], "B": [400.0, 400.0]}, demand={("k", "o"): [8.0, 8.0]}, slots=2)
    sc = planner.scenario_from_dict(doc)
    real = dec.slot_task
    calls = {0: 0, 1: 0}

    def flaky(a):  # slot 1's second task (a pricing round, or its tie-break) fails
        calls[a["t"]] += 1
        if a["t"] == 1 and calls[1] == 2:
            return {"t": 1, "status": "error", "message": "injected", "objective": None, "bound": None, "x": None,
                    "tie": "none", "seconds": 0.0, "build_seconds": 0.0}
        return real(a)

    monkeypatch.setattr(dec, "slot_task", flaky)
    plan = planner.solve(sc, "carbon", budget_usd=11.0, mip_gap=0.0)
    assert calls[1] >= 2
    assert planner.check(plan, sc).ok
    assert plan.objective.value == pytest.approx(0.13, rel=1e-6)


def test_slot_runner_rounds_start_uncancelled(monkeypatch):
    """A slot error cancels the rest of its round, not the next round (the tie-break round used to
    start cancelled and assemble NaN from the cancelled slots)."""
    import planner.optimize.decompose as dec
    from formulations import build, build_sets
    from planner.optimize.backends import SolveOptions

    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [8.0, 8.0]}, slots=2))
    md = build_sets(sc)
    _, v = build(md)
    runner = dec.SlotRunner(sc, md, v, "carbon", "highs", SolveOptions(threads=1))
    real = dec.slot_task
    failing = {"on": True}

    def flaky(a):
        if failing["on"] and a["t"] == 0:
            return {"t": 0, "status": "error", "message": "injected", "objective": None, "bound": None, "x": None,
                    "tie": "none", "seconds": 0.0, "build_seconds": 0.0}
        return real(a)

    monkeypatch.setattr(dec, "slot_task", flaky)
    with runner:
        tasks = [runner.task(m, m.primary, SolveOptions(None, 0.0, 1)) for m in runner.models]
        first = runner.run(tasks)
        assert first[0]["status"] == "error"
        failing["on"] = False
        second = runner.run(tasks)
    assert [r["status"] for r in second] == ["optimal", "optimal"]
    assert all(r["x"] is not None for r in second)
