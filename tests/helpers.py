"""Shared test helpers: solve, then always verify with the independent checker."""

from __future__ import annotations

import planner

BACKENDS = ("highs", "pyomo", "pulp")


def solve_checked(doc_or_sc, objective="carbon", backend="highs", **kw):
    """Solve exactly (MIP gap 0) and assert the independent checker accepts the plan."""
    sc = doc_or_sc if isinstance(doc_or_sc, planner.Scenario) else planner.scenario_from_dict(doc_or_sc)
    kw.setdefault("mip_gap", 0.0)
    plan = planner.solve(sc, objective=objective, backend=backend, **kw)
    rep = planner.check(plan, sc)
    assert rep.ok, rep.render()
    return plan, sc


def deployments(plan, slot=0):
    return {(d.region, d.gpu, d.freq_mhz): d.replicas for d in plan.slots[slot].deployments}
