"""The whole model solved at once: a :class:`BuiltModel`, its solve with the lexicographic tie-break,
and the mapping of a solver's status to the planner's errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from formulations import (
    OBJECTIVE_EXPRESSION,
    SECONDARY,
    LinearModel,
    ModelData,
    Vars,
    objective_vector,
    repair_replicas,
)
from planner.errors import InfeasibleError, NoSolutionError, SolverError
from planner.optimize.backends.base import (
    INFEASIBLE,
    NO_SOLUTION,
    OPTIMAL,
    UNBOUNDED,
    Backend,
    SolveOptions,
    SolveResult,
)
from planner.optimize.explain import Explanation, explain_infeasible
from planner.optimize.extract import make_plan
from planner.plan.schema import Plan
from planner.scenario.loading import Scenario

DEFAULT_COUPLED_TIME_LIMIT = 120.0
"""Seconds the whole-model MILP of a solve with a budget or carbon cap may take when no time limit
is given (the Lagrangian's whole-model refinement, or the whole-model solve itself); it then ends
with the best plan found and its proven gap. The slot rounds keep no limit, so their results do not
depend on the machine's speed."""


@dataclass
class BuiltModel:
    """A model ready to solve: the sets, the neutral LinearModel and the backend's native model.

    ``native`` is the solver library's object; add constraints to it, then call :meth:`solve`.
    """

    scenario: Scenario
    data: ModelData
    lm: LinearModel
    vars: Vars
    backend: Backend
    objective: str
    build_seconds: float

    @property
    def native(self):
        return self.backend.native

    def write(self, path: str | Path) -> None:
        """Write the exact model given to HiGHS; format by suffix (.mps or .lp)."""
        self.backend.write_model(str(path))

    def solve(self, time_limit: float | None = None, mip_gap: float = 5e-3, threads: int | None = None,
              seed: int | None = None, progress: Callable[[dict], None] | None = None) -> Plan:
        return solve_built(self, SolveOptions(time_limit, mip_gap, threads, seed, progress))


def solve_built(b: BuiltModel, opts: SolveOptions) -> Plan:
    sc, lm, be = b.scenario, b.lm, b.backend
    t_start = time.perf_counter()
    o1 = SolveOptions(opts.time_limit, opts.mip_gap, opts.threads, opts.seed, opts.progress)
    r1 = be.solve(o1)
    raise_for(r1, sc, opts)
    x = r1.x
    tie = sc.options.tie_break.value
    sec = SECONDARY[b.objective] if tie != "none" else None
    solve_seconds = r1.solve_seconds
    if sec is not None:
        remaining = None if opts.time_limit is None else opts.time_limit - (time.perf_counter() - t_start)
        x, tie, ok, s2 = tie_break(be, lm, objective_vector(lm, b.data, b.objective), lm.expressions[
            OBJECTIVE_EXPRESSION[sec]], x, remaining, opts, tie)
        solve_seconds += s2
        if not ok:
            sec = None
    status = "optimal" if r1.status == OPTIMAL else "feasible"
    info = dict(
        backend=be.name, status=r1.message, gap=r1.gap, bound=r1.bound, mip_gap=opts.mip_gap,
        time_limit=opts.time_limit, threads=opts.threads, seed=opts.seed, tie_break=tie,
        variables=lm.ncols, constraints=lm.nrows, integer_variables=int(lm.integrality.sum()),
        build_seconds=b.build_seconds + be.build_seconds, solve_seconds=solve_seconds, slots_solved_separately=False,
    )
    return make_plan(b.scenario, b.data, b.lm, b.vars, b.objective, x, status, info, sec)


def raise_for(r: SolveResult, sc: Scenario, opts: SolveOptions, where: str = "") -> None:
    if r.status in (INFEASIBLE, UNBOUNDED):
        if not opts.explain:
            raise InfeasibleError(Explanation("no plan meets every constraint (not explained: explain=False)", [],
                                              "unknown"))
        raise InfeasibleError(explain_infeasible(sc, opts))
    if r.status == NO_SOLUTION:
        raise NoSolutionError(
            f"no feasible plan found within the time limit ({opts.time_limit} s){where}; best bound "
            f"{r.bound if r.bound is not None else 'unknown'}. Raise --time-limit or --mip-gap."
        )
    if not r.has_solution:
        raise SolverError(f"the solver failed{where}: {r.message}")


def tie_break(be: Backend, lm: LinearModel, primary: np.ndarray, secondary: np.ndarray, x: np.ndarray,
               remaining: float | None, opts: SolveOptions, mode: str):
    """Minimise ``secondary`` with ``primary`` held at its value in ``x``. Returns (x, label, ok, seconds).

    mode ``routing``: the integer columns (replicas) are fixed to their values in ``x`` first, so the
    second stage is an LP over routing and assignment. mode ``lexicographic``: nothing is fixed.
    """
    if remaining is not None and remaining < 0.05:
        return x, "skipped: time limit reached by the primary solve", False, 0.0
    z1 = float(primary @ x)
    nz = np.nonzero(primary)[0]
    if mode == "routing":
        ints = np.nonzero(lm.integrality)[0]
        be.fix_columns(ints, repair_replicas(lm, x)[ints])
    # held relative to its value; replicas are whole within 1e-8, so fixing them moves it by less
    tol = 1e-9 * abs(z1) + 1e-12
    be.add_row("tie_break_primary_bound", nz, primary[nz], -np.inf, z1 + tol)
    be.set_objective(secondary)
    r2 = be.solve(replace(opts, time_limit=remaining, progress=None), start=x)
    if r2.has_solution and float(primary @ r2.x) <= z1 + 10 * tol:
        return r2.x, mode, True, r2.solve_seconds
    return x, f"skipped: tie-break solve ended {r2.status}", False, r2.solve_seconds
