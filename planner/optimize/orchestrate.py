"""The library's solve entry points: :func:`build_model` (the whole MILP on a backend, to extend) and
:func:`solve` (slot by slot when nothing couples the slots, the Lagrangian for a budget or cap, else
the whole model)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from formulations import objective_vector
from planner.errors import InputError
from planner.io import atomic_path
from planner.optimize.backends import SolveOptions, get_backend
from planner.optimize.decompose import solve_by_slot
from planner.optimize.explain import refuse_impossible_limits
from planner.optimize.prepare import prepare
from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT, BuiltModel, solve_built
from planner.plan.schema import Plan
from planner.scenario.loading import Scenario


def build_model(scenario: Scenario, objective: str | None = None, backend: str = "highs", names: bool = False,
                **option_overrides: Any) -> BuiltModel:
    """Build the whole (all slots) MILP for ``scenario`` on the chosen backend.

    Keyword arguments override scenario options. The returned model's ``native`` object can be
    extended with your own constraints before :meth:`BuiltModel.solve`, which solves it as one model.
    Raises :class:`~planner.errors.InfeasibleError` when some demand cannot be routed at all.
    """
    sc, md, lm, v, secs = prepare(scenario, objective, option_overrides)
    obj = sc.options.objective.value
    be = get_backend(backend)(lm, objective_vector(lm, md, obj), names=names)
    return BuiltModel(sc, md, lm, v, be, obj, secs)


def solve(scenario: Scenario, objective: str | None = None, backend: str = "highs", *,
          time_limit: float | None = None, mip_gap: float = 5e-3, threads: int | None = None,
          seed: int | None = None, write_model: str | Path | None = None,
          progress: Callable[[dict], None] | None = None, decompose: bool = True, explain: bool = True,
          **option_overrides: Any) -> Plan:
    """Solve ``scenario`` and return a :class:`~planner.plan.schema.Plan`.

    ``objective``: carbon | energy | cost | gpu-hours; ``backend``: highs | pyomo | pulp; other
    keyword arguments override scenario options (``budget_usd``, ``carbon_cap_kg``, ``tie_break``,
    ``max_utilization``).

    Without a budget or carbon cap nothing couples the slots, so each slot is solved on its own
    (exactly the same optimum, much faster), ``threads`` slots at a time. With a budget or cap,
    the slot-by-slot optimum is used when it satisfies them (it is then optimal for the whole
    model); otherwise the whole model is solved at once. ``decompose=False`` always solves the
    whole model.

    Raises InfeasibleError (with an explanation; ``explain=False`` skips the diagnostic solves that
    find it, for callers that only need to know), NoSolutionError (time limit without a feasible
    plan) or SolverError.
    """
    if mip_gap is None:
        mip_gap = 5e-3
    if not (isinstance(mip_gap, (int, float)) and 0 <= mip_gap < 1):
        raise InputError(f"mip_gap must be in [0, 1), got {mip_gap}")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit)
                                       and time_limit > 0):
        raise InputError(f"time_limit must be a positive finite number of seconds, got {time_limit}")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise InputError(f"threads must be a whole number >= 1, got {threads}")
    sc, md, lm, v, secs = prepare(scenario, objective, option_overrides)
    obj = sc.options.objective.value
    coupled = sc.options.budget_usd is not None or sc.options.carbon_cap_kg is not None
    if coupled:
        t0 = time.perf_counter()
        refuse_impossible_limits(sc, md, threads)
        secs += time.perf_counter() - t0
    opts = SolveOptions(time_limit, mip_gap, threads, seed, progress, explain=bool(explain))
    be = None  # the whole model's native form, built once (for writing and/or the whole-model solve)
    if write_model is not None:
        be = get_backend(backend)(lm, objective_vector(lm, md, obj), names=True)
        t0 = time.perf_counter()
        with atomic_path(write_model) as tmp:
            be.write_model(tmp)
        secs += time.perf_counter() - t0
    over_time = sc.options.scaling is not None  # replicas carry over: the slots are one model
    if decompose and sc.n_slots > 1 and not over_time:
        plan = solve_by_slot(sc, md, lm, v, obj, backend, opts, secs + (be.build_seconds if be else 0.0))
        if plan is not None:
            return plan
    if over_time and decompose and not coupled and sc.n_slots > 1:
        from planner.optimize.rolling import solve_rolling

        return solve_rolling(sc, md, lm, v, obj, backend, opts, secs + (be.build_seconds if be else 0.0))
    if be is None:
        be = get_backend(backend)(lm, objective_vector(lm, md, obj))
    if (coupled or over_time) and time_limit is None:
        opts = replace(opts, time_limit=DEFAULT_COUPLED_TIME_LIMIT)  # the whole-model MILP: bounded
    return solve_built(BuiltModel(sc, md, lm, v, be, obj, secs), opts)
