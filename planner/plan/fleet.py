"""Plans as the starting point of the next plan: the fleet a plan runs in one of its slots."""

from __future__ import annotations

from planner.errors import PlanFileError, Problem, ScenarioError
from planner.plan.checker import read_plan
from planner.scenario.loading import Scenario


def fleet_of(plan, slot: int = -1) -> list[dict]:
    """The replicas ``plan`` (a Plan, a plan file's path or its JSON text) runs in ``slot`` (default: its
    last), as ``options.scaling.initial`` entries; replicas of one config in several latency pools are
    summed. PlanFileError for a bad plan or slot."""
    p = read_plan(plan)
    if not p.slots or not -len(p.slots) <= slot < len(p.slots):
        raise PlanFileError([Problem("plan", f"has {len(p.slots)} slot(s); slot {slot} does not exist")])
    agg: dict[tuple, int] = {}
    for d in p.slots[slot].deployments:
        key = (d.region, d.model, d.gpu, int(d.tp), int(d.pp), float(d.freq_mhz), d.market or "on-demand")
        agg[key] = agg.get(key, 0) + int(d.replicas)
    return [dict(region=r, model=m, gpu=g, tp=tp, pp=pp, freq_mhz=f, replicas=n, market=mk)
            for (r, m, g, tp, pp, f, mk), n in sorted(agg.items()) if n > 0]


def with_initial_fleet(scenario: Scenario, plan, slot: int = -1) -> Scenario:
    """``scenario`` with ``options.scaling.initial`` set to the fleet ``plan`` runs in ``slot`` (default: its
    last): re-planning from the plan in force, so the first slot's actions are relative to what runs
    now. Raises ScenarioError without ``options.scaling`` (or when the fleet names what the scenario
    lacks), PlanFileError for a bad plan or slot."""
    if scenario.spec.options.scaling is None:
        raise ScenarioError([Problem("options.scaling", "an initial fleet needs options.scaling (the fleet over "
                                                        "time)")], "no fleet over time")
    init = fleet_of(plan, slot)
    return scenario.replace_options(scaling=scenario.spec.options.scaling.model_dump() | {"initial": init})
