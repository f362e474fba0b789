"""fleetplan: carbon-, energy- and cost-optimal serving plans for LLM fleets.

Library entry points::

    import planner
    sc = planner.load_scenario("scenario.yaml")          # or None for the embedded default
    plan = planner.solve(sc, objective="carbon", backend="highs")
    report = planner.check(plan, sc)                      # independent verification
    sim = planner.simulate(plan, sc, minutes=10)           # discrete-event verification
    plan = planner.verify(plan, sc, traces=["conv.csv"])    # re-solved until its SLOs hold in simulation

The package is one subpackage per concern (README, "Architecture"): ``scenario`` (schema, loading,
generator), ``perf`` (performance, power and DVFS model, profile import), ``datatools`` (users'
carbon exports and traces), ``optimize`` (the solve over the solver-free ``formulations`` and the
backends), ``plan`` (plan schema, independent checker, summary), ``sim`` (discrete-event
verification) and ``cli`` (the ``plan`` command, which nothing else imports).

The solve, check and simulate entry points are imported on first use, so ``import planner`` (and
``import formulations``, which reads the scenario types) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planner.errors import (
    InfeasibleError,
    InputError,
    NoSolutionError,
    NumericalError,
    PlanFileError,
    PlannerError,
    ScenarioError,
    SolverError,
)
from planner.plan.schema import Plan
from planner.scenario.loading import Scenario, load_scenario, scenario_from_dict

if TYPE_CHECKING:  # for type checkers and editors; at run time these come from __getattr__
    from planner.optimize.orchestrate import build_model, solve
    from planner.optimize.whole import BuiltModel
    from planner.plan.checker import check
    from planner.sim.orchestrate import simulate
    from planner.verify.loop import verify

_LAZY = {
    "solve": "planner.optimize.orchestrate",
    "build_model": "planner.optimize.orchestrate",
    "BuiltModel": "planner.optimize.whole",
    "check": "planner.plan.checker",
    "simulate": "planner.sim.orchestrate",
    "verify": "planner.verify.loop",
}

__all__ = [
    "load_scenario", "scenario_from_dict", "solve", "build_model", "BuiltModel", "Scenario", "Plan",
    "PlannerError", "InputError", "ScenarioError", "PlanFileError", "InfeasibleError", "NoSolutionError",
    "SolverError", "NumericalError", "check", "simulate", "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
