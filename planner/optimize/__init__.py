"""Solving: the scenario's MILP (built by the solver-free :mod:`formulations`) on a backend, into a plan.

In the order a solve runs:

* :mod:`~planner.optimize.prepare`: options applied, demand below the resolution left out, the
  size checked, the sets and the neutral model built;
* :mod:`~planner.optimize.orchestrate`: :func:`solve` and :func:`build_model`, the library's entry
  points, choosing slot by slot, the Lagrangian or the whole model;
* :mod:`~planner.optimize.decompose`: slot-by-slot solves in threads, the Lagrangian for a budget
  or carbon cap, the whole-model refinement;
* :mod:`~planner.optimize.whole`: a :class:`BuiltModel` solved at once, the lexicographic tie-break,
  solver status to errors;
* :mod:`~planner.optimize.extract`: a solution cleaned, verified row by row and turned into a plan;
* :mod:`~planner.optimize.explain`: why a scenario is infeasible (capacity findings, IIS, LP bounds);
* :mod:`~planner.optimize.backends`: the same neutral model as a native HiGHS, Pyomo or PuLP model.
"""

from planner.optimize.extract import verify_solution
from planner.optimize.orchestrate import build_model, solve
from planner.optimize.prepare import estimate_nonzeros
from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT, BuiltModel

__all__ = ["solve", "build_model", "BuiltModel", "DEFAULT_COUPLED_TIME_LIMIT", "verify_solution", "estimate_nonzeros"]
