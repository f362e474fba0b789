"""Pyomo: a ConcreteModel with one named indexed Var per variable family and one indexed Constraint
per constraint family, indexed by human labels (e.g. ``m.replicas['eu-west', 'llama-8b|H100|...', 3]``),
solved with HiGHS through Pyomo's ``highs`` interface."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.core.expr.numeric_expr import LinearExpression

from planner.highs_runtime import prepare_thread, silence_banner
from planner.optimize.backends.base import (
    ERROR,
    FEASIBLE,
    INFEASIBLE,
    MIP_FEASIBILITY_TOLERANCE,
    NO_SOLUTION,
    OPTIMAL,
    UNBOUNDED,
    Backend,
    SolveOptions,
    SolveResult,
    empty_result,
    gap_of,
)

PYOMO_LOCK = threading.RLock()
"""Pyomo is not thread-safe (its solver interfaces capture file descriptors 1 and 2 process-wide and
keep module-level state), so every Pyomo model is built and solved under this lock: slot solves on
this backend run one at a time."""


def _key(lm, dims, codes):
    out = []
    for d, i in zip(dims, codes):
        if d == "slot":
            out.append(int(i))
        else:
            out.append(lm.labels[d][int(i)])
    return tuple(out)


class PyomoBackend(Backend):
    name = "pyomo"

    def _build(self, objective, names):
        with PYOMO_LOCK:
            self._build_locked(objective, names)

    def _build_locked(self, objective, names):
        silence_banner()
        lm = self.lm
        m = pyo.ConcreteModel(name="serving_plan")
        cols: list = [None] * lm.ncols
        for b in lm.var_blocks:
            keys = [_key(lm, b.dims, row) for row in b.index]
            dom = pyo.NonNegativeIntegers if b.integer else pyo.NonNegativeReals
            var = pyo.Var(keys, domain=dom, dense=True, doc=b.doc)
            m.add_component(b.name, var)
            for j, k in enumerate(keys):
                v = var[k]
                v.setlb(float(b.lower[j]))
                v.setub(float(b.upper[j]) if np.isfinite(b.upper[j]) else None)
                cols[b.start + j] = v
        self.cols = cols
        start, cidx, vals = lm.csr_rows()
        for b in lm.con_blocks:
            keys = [_key(lm, b.dims, row) for row in b.index]
            lo, up = b.lower, b.upper

            def rule(_m, *k, _b=b, _map={kk: j for j, kk in enumerate(keys)}):
                j = _map[k]
                r = _b.start + j
                s, e = start[r], start[r + 1]
                expr = LinearExpression(constant=0.0, linear_coefs=list(vals[s:e]),
                                        linear_vars=[cols[c] for c in cidx[s:e]])
                low = float(lo[j]) if np.isfinite(lo[j]) else None
                upp = float(up[j]) if np.isfinite(up[j]) else None
                if low is not None and upp is not None and low == upp:
                    return expr == low
                return (low, expr, upp)

            m.add_component(b.name, pyo.Constraint(keys, rule=rule, doc=b.doc))
        self.m = m
        self._user_rows = 0
        self.set_objective(objective)

    @property
    def native(self) -> pyo.ConcreteModel:
        return self.m

    def _lin(self, vec):
        nz = np.nonzero(vec)[0]
        return LinearExpression(constant=0.0, linear_coefs=list(np.asarray(vec)[nz]),
                                linear_vars=[self.cols[c] for c in nz])

    def set_objective(self, objective):
        m = self.m
        if hasattr(m, "objective"):
            m.del_component("objective")
        m.objective = pyo.Objective(expr=self._lin(objective), sense=pyo.minimize)

    def fix_columns(self, cols, values):
        for c, val in zip(cols, values):
            self.cols[int(c)].fix(float(val))

    def add_row(self, name, cols, vals, lower, upper):
        vec = np.zeros(self.lm.ncols)
        vec[np.asarray(cols)] = vals
        expr = self._lin(vec)
        low = float(lower) if np.isfinite(lower) else None
        upp = float(upper) if np.isfinite(upper) else None
        self.m.add_component(name, pyo.Constraint(expr=(low, expr, upp)))
        self._user_rows += 1

    def _solver(self):
        return SolverFactory("highs")

    def _solve(self, opts: SolveOptions, start=None) -> SolveResult:
        if self.lm.ncols == 0:
            return empty_result()
        opt = self._solver()
        kw = {"load_solutions": False, "raise_exception_on_nonoptimal_result": False, "rel_gap": float(opts.mip_gap)}
        if opts.time_limit is not None:
            kw["time_limit"] = float(opts.time_limit)
        if opts.threads is not None:
            kw["threads"] = int(opts.threads)
        so = {"mip_feasibility_tolerance": MIP_FEASIBILITY_TOLERANCE}
        if opts.seed is not None:
            so["random_seed"] = int(opts.seed)
        if so:
            kw["solver_options"] = so
        # Pyomo's HiGHS interface takes no warm start; ``start`` is ignored here.

        with PYOMO_LOCK:
            if opts.cancel is not None and opts.cancel.is_set():
                return SolveResult(ERROR, None, None, None, 0.0, None, "cancelled")
            prepare_thread(opts.threads)
            t0 = time.perf_counter()
            res = opt.solve(self.m, **kw)
            elapsed = time.perf_counter() - t0
            self._last_solver = opt
            return self._result(res, elapsed)

    def _result(self, res, elapsed):
        tc, ss = res.termination_condition, res.solution_status
        has = ss in (SolutionStatus.optimal, SolutionStatus.feasible)
        x = None
        if has:
            res.solution_loader.load_vars()
            x = np.array([c.value if c.value is not None else 0.0 for c in self.cols], float)
        obj = res.incumbent_objective if has else None
        bound = res.objective_bound
        bound = float(bound) if bound is not None and np.isfinite(bound) else None
        if tc == TerminationCondition.convergenceCriteriaSatisfied:
            status = OPTIMAL
        elif tc in (TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible,
                    TerminationCondition.infeasibleOrUnbounded):
            status = INFEASIBLE
        elif tc == TerminationCondition.unbounded:
            status = UNBOUNDED
        elif tc in (TerminationCondition.maxTimeLimit, TerminationCondition.iterationLimit,
                    TerminationCondition.interrupted, TerminationCondition.objectiveLimit):
            status = FEASIBLE if has else NO_SOLUTION
        else:
            status = FEASIBLE if has else ERROR
        return SolveResult(status, obj, bound, gap_of(obj, bound) if has else None, elapsed, x, message=str(tc))

    def write_model(self, path: str) -> None:
        """Write the exact model Pyomo hands to HiGHS (by suffix: .mps or .lp)."""
        with PYOMO_LOCK:
            opt = self._solver()
            opt.set_instance(self.m)
            opt._solver_model.writeModel(str(path))
