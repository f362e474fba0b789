"""The serving-plan MILP: sets, variables, constraint families and objectives.

Solver-neutral: nothing here imports highspy, pyomo or pulp. :func:`build` returns a
:class:`LinearModel` that the backends in :mod:`planner.optimize.backends` turn into native models.
"""

from .constraints import (
    OBJECTIVE_EXPRESSION,
    SECONDARY,
    Vars,
    build,
    objective_vector,
    repair_replicas,
)
from .linear import ConBlock, LinearModel, VarBlock
from .sets import ModelData, Pruning, build_sets

__all__ = [
    "OBJECTIVE_EXPRESSION", "SECONDARY", "Vars", "build", "objective_vector", "repair_replicas", "ConBlock", "LinearModel",
    "VarBlock", "ModelData", "Pruning", "build_sets",
]
