"""fleetplan: carbon-, energy- and cost-optimal serving plans for LLM fleets.

Library entry points::

    import planner
    sc = planner.load_scenario("scenario.yaml")          # or None for the embedded default
    plan = planner.solve(sc, objective="carbon", backend="highs")
    report = planner.check(plan, sc)                      # independent verification
"""

from .errors import (
    InfeasibleError,
    InputError,
    NoSolutionError,
    PlanFileError,
    PlannerError,
    ScenarioError,
    SolverError,
)
from .loading import Scenario, load_scenario, scenario_from_dict
from .plan import Plan
from .solving import BuiltModel, build_model, solve

__all__ = [
    "load_scenario", "scenario_from_dict", "solve", "build_model", "BuiltModel", "Scenario", "Plan",
    "PlannerError", "InputError", "ScenarioError", "PlanFileError", "InfeasibleError", "NoSolutionError",
    "SolverError", "check",
]


def check(plan, scenario, **kw):
    """Independently verify ``plan`` against ``scenario``; see :func:`planner.checker.check`."""
    from .checker import check as _check

    return _check(plan, scenario, **kw)
