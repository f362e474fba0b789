"""Solver backends: the same :class:`~formulations.linear.LinearModel` as a native HiGHS, Pyomo or PuLP model."""

from __future__ import annotations

from planner.optimize.backends.base import (
    ERROR,
    FEASIBLE,
    INFEASIBLE,
    NO_SOLUTION,
    OPTIMAL,
    UNBOUNDED,
    Backend,
    SolveOptions,
    SolveResult,
)

BACKENDS = ("highs", "pyomo", "pulp")


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``highs``, ``pyomo`` or ``pulp`` (imported lazily)."""
    if name == "highs":
        from planner.optimize.backends.highs import HighsBackend

        return HighsBackend
    if name == "pyomo":
        from planner.optimize.backends.pyomo_backend import PyomoBackend

        return PyomoBackend
    if name == "pulp":
        from planner.optimize.backends.pulp_backend import PulpBackend

        return PulpBackend
    from planner.errors import InputError

    raise InputError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "get_backend", "Backend", "SolveOptions", "SolveResult", "OPTIMAL", "FEASIBLE",
           "INFEASIBLE", "UNBOUNDED", "NO_SOLUTION", "ERROR"]
