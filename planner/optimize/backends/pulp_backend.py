"""PuLP: an LpProblem with one LpVariable per column and one named LpConstraint per row, solved by
PuLP's HiGHS interface (highspy)."""

from __future__ import annotations

import time

import numpy as np
import pulp

from planner.highs_runtime import run_highs, silence_banner
from planner.optimize.backends.base import MIP_FEASIBILITY_TOLERANCE, Backend, SolveOptions, SolveResult, empty_result
from planner.optimize.backends.highs import read_status


class _HiGHS(pulp.HiGHS):
    """PuLP's HiGHS interface, running HiGHS through :func:`~planner.highs_runtime.run_highs`
    (this thread's scheduler sized to the run, cancellable)."""

    def __init__(self, *args, threads=None, cancel=None, **kw):
        if threads is not None:
            kw["threads"] = threads
        super().__init__(*args, **kw)
        self._threads, self._cancel = threads, cancel

    def callSolver(self, lp):
        run_highs(lp.solverModel, self._threads, self._cancel)


class PulpBackend(Backend):
    name = "pulp"

    def _build(self, objective, names):
        silence_banner()
        lm = self.lm
        prob = pulp.LpProblem("serving_plan", pulp.LpMinimize)
        vnames = lm.var_names(safe=True)
        cols = []
        # PuLP >= 3.3 attaches variables to the problem (add_variable); older versions construct them
        new = getattr(prob, "add_variable", None)
        for b in lm.var_blocks:
            cat = pulp.LpInteger if b.integer else pulp.LpContinuous
            for j in range(b.size):
                ub = float(b.upper[j]) if np.isfinite(b.upper[j]) else None
                name, lb = vnames[b.start + j], float(b.lower[j])
                cols.append(new(name, lb, ub, cat=cat) if new else pulp.LpVariable(name, lowBound=lb, upBound=ub, cat=cat))
        self.cols = cols
        start, cidx, vals = lm.csr_rows()
        rnames = lm.row_names(safe=True)
        lo, up = lm.row_lower, lm.row_upper
        for r in range(lm.nrows):
            s, e = start[r], start[r + 1]
            expr = pulp.LpAffineExpression([(cols[c], float(v)) for c, v in zip(cidx[s:e], vals[s:e])])
            self._add(prob, rnames[r], expr, lo[r], up[r])
        self.prob = prob
        self.set_objective(objective)

    @staticmethod
    def _add(prob, name, expr, lower, upper):
        if np.isfinite(lower) and np.isfinite(upper) and lower == upper:
            prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, name, float(lower)))
            return
        if np.isfinite(upper):
            prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintLE, name if not np.isfinite(lower) else name + "__ub", float(upper)))
        if np.isfinite(lower):
            prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintGE, name if not np.isfinite(upper) else name + "__lb", float(lower)))

    @property
    def native(self) -> pulp.LpProblem:
        return self.prob

    def set_objective(self, objective):
        nz = np.nonzero(objective)[0]
        self.prob.setObjective(pulp.LpAffineExpression([(self.cols[c], float(objective[c])) for c in nz]))

    def fix_columns(self, cols, values):
        for c, val in zip(cols, values):
            self.cols[int(c)].lowBound = float(val)
            self.cols[int(c)].upBound = float(val)

    def add_row(self, name, cols, vals, lower, upper):
        expr = pulp.LpAffineExpression([(self.cols[c], float(v)) for c, v in zip(cols, vals)])
        self._add(self.prob, name, expr, lower, upper)

    def _solver(self, opts: SolveOptions):
        kw = {"msg": False, "gapRel": float(opts.mip_gap), "mip_feasibility_tolerance": MIP_FEASIBILITY_TOLERANCE}
        if opts.time_limit is not None:
            kw["timeLimit"] = float(opts.time_limit)
        if opts.seed is not None:
            kw["random_seed"] = int(opts.seed)
        return _HiGHS(threads=int(opts.threads) if opts.threads else None, cancel=opts.cancel, **kw)

    def _solve(self, opts: SolveOptions, start=None) -> SolveResult:
        if self.lm.ncols == 0:
            return empty_result()
        solver = self._solver(opts)  # PuLP's HiGHS interface takes no warm start; ``start`` is ignored
        t0 = time.perf_counter()
        self.prob.solve(solver)
        elapsed = time.perf_counter() - t0
        h = self.prob.solverModel
        is_mip = any(v.cat == pulp.LpInteger for v in self.cols)
        res = read_status(h, is_mip, elapsed)
        x = None
        if res.x is not None:
            x = np.array([c.varValue if c.varValue is not None else 0.0 for c in self.cols], float)
        return SolveResult(res.status, res.objective, res.bound, res.gap, elapsed, x, res.message)

    def write_model(self, path: str) -> None:
        """Write the exact model PuLP hands to HiGHS (by suffix: .mps or .lp)."""
        solver = self._solver(SolveOptions())
        solver.createAndConfigureSolver(self.prob)
        solver.buildSolverModel(self.prob)
        self.prob.solverModel.writeModel(str(path))
