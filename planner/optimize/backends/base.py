"""Backend interface and the small result dataclasses every backend returns."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from formulations.linear import LinearModel

OPTIMAL = "optimal"
FEASIBLE = "feasible"  # a feasible plan, stopped at a limit before proving optimality
INFEASIBLE = "infeasible"
UNBOUNDED = "unbounded"
NO_SOLUTION = "no_solution"  # stopped at a limit with no feasible plan
ERROR = "error"

MIP_FEASIBILITY_TOLERANCE = 1e-8
"""Integrality tolerance given to HiGHS (its default, 1e-6, lets a tiny load ride on 1e-6 replicas)."""


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float | None = None
    """Wall-clock seconds for one solve (None: no limit)."""
    mip_gap: float = 5e-3
    """Relative MIP gap at which the solver stops."""
    threads: int | None = None
    seed: int | None = None
    progress: Callable[[dict], None] | None = field(default=None, compare=False)
    """Called with {incumbent, bound, gap, elapsed} while a MIP solves (HiGHS backend only)."""
    cancel: threading.Event | None = field(default=None, compare=False, repr=False)
    """Set from another thread to stop the solve soon (HiGHS and PuLP backends: within milliseconds;
    Pyomo: at its time limit). A cancelled solve returns a result without a solution."""
    root_rounds: int | None = None
    """Stop a MIP after this many rounds of root cuts (counted by HiGHS's interrupt callback once the
    root LP has a bound), keeping the bound reached: a cheap bound, the same on every run (HiGHS backend;
    the others solve on)."""
    max_nodes: int | None = None
    """Stop a MIP after this many branch-and-bound nodes (1: the root, with its heuristics), keeping the
    best plan found (HiGHS backend; the others solve on)."""
    explain: bool = field(default=True, compare=False)
    """Whether an infeasible solve computes its explanation (diagnostic solves) before raising;
    the backends ignore it."""


@dataclass(frozen=True)
class SolveResult:
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    solve_seconds: float
    x: np.ndarray | None = field(default=None, repr=False)
    message: str = ""

    @property
    def has_solution(self) -> bool:
        return self.status in (OPTIMAL, FEASIBLE) and self.x is not None


class Backend:
    """A native model built from a :class:`LinearModel`.

    ``native`` is the solver library's own object (``highspy.Highs``, a Pyomo ``ConcreteModel`` or a
    ``pulp.LpProblem``): add your own variables or constraints to it, then call :meth:`solve`;
    the plan is read from the columns of the LinearModel.
    """

    name = "base"

    def __init__(self, lm: LinearModel, objective: np.ndarray, names: bool = False):
        self.lm = lm
        t0 = time.perf_counter()
        self._build(objective, names)
        self.build_seconds = time.perf_counter() - t0

    # implemented by each backend
    def _build(self, objective: np.ndarray, names: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def set_objective(self, objective: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def add_row(self, name: str, cols: np.ndarray, vals: np.ndarray, lower: float, upper: float) -> None:
        raise NotImplementedError  # pragma: no cover

    def solve(self, opts: SolveOptions, start: np.ndarray | None = None) -> SolveResult:
        """Solve the native model. On the main thread the solver runs in a helper thread while the main
        thread waits, so Ctrl-C and signal handlers act at once: the solve is cancelled and the
        exception propagates (a solver library holds the main thread otherwise until it ends)."""
        return call_interruptibly(lambda o: self._solve(o, start), opts)

    def _solve(self, opts: SolveOptions, start: np.ndarray | None = None) -> SolveResult:  # pragma: no cover
        raise NotImplementedError

    def fix_columns(self, cols: np.ndarray, values: np.ndarray) -> None:  # pragma: no cover
        """Fix the given columns to values (used to hold the fleet while re-routing)."""
        raise NotImplementedError

    def write_model(self, path: str) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def native(self):  # pragma: no cover
        raise NotImplementedError


def call_interruptibly(fn: Callable[[SolveOptions], SolveResult], opts: SolveOptions) -> SolveResult:
    """``fn(opts)``; on the main thread in a helper thread, waiting in short steps so that signals
    reach the caller (off the main thread, signals are not delivered anyway: ``fn`` runs directly).

    On any exception in the waiting thread (KeyboardInterrupt, a SIGTERM handler's exception) the
    solve's cancel event is set, the helper is given a moment to stop, and the exception propagates.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(opts)
    cancel = opts.cancel if opts.cancel is not None else threading.Event()
    o = replace(opts, cancel=cancel)
    box: dict = {}

    def target():
        try:
            box["r"] = fn(o)
        except BaseException as e:  # handed to the caller's thread
            box["e"] = e

    th = threading.Thread(target=target, name="fleetplan-solve", daemon=True)
    th.start()
    try:
        while th.is_alive():
            th.join(0.05)
    except BaseException:
        cancel.set()
        th.join(5.0)
        raise
    if "e" in box:
        raise box["e"]
    return box["r"]


def empty_result() -> SolveResult:
    """The optimum of a model with no variables (nothing to serve): zero."""
    return SolveResult(OPTIMAL, 0.0, 0.0, 0.0, 0.0, np.zeros(0), "empty model: nothing to serve")


def gap_of(obj: float | None, bound: float | None) -> float | None:
    if obj is None or bound is None or not np.isfinite(obj) or not np.isfinite(bound):
        return None
    return abs(obj - bound) / max(abs(obj), 1e-9) if abs(obj - bound) > 1e-12 else 0.0
