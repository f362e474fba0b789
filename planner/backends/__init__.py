"""Solver backends: the same :class:`~formulations.linear.LinearModel` as a native HiGHS, Pyomo or PuLP model."""

from __future__ import annotations

from .base import (
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
        from .highs import HighsBackend

        return HighsBackend
    if name == "pyomo":
        from .pyomo_backend import PyomoBackend

        return PyomoBackend
    if name == "pulp":
        from .pulp_backend import PulpBackend

        return PulpBackend
    from ..errors import InputError

    raise InputError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "get_backend", "Backend", "SolveOptions", "SolveResult", "OPTIMAL", "FEASIBLE",
           "INFEASIBLE", "UNBOUNDED", "NO_SOLUTION", "ERROR"]
