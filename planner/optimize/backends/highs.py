"""HiGHS through highspy: the whole matrix is handed over at once (``passModel``), no per-row calls.

Runs go through :func:`planner.highs_runtime.run_highs` (per-thread scheduler, silent banner,
cancellation).
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from planner.errors import NumericalError
from planner.highs_runtime import new_highs, run_highs
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
)

_INF = highspy.kHighsInf


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float).copy()
    a[np.isposinf(a)] = _INF
    a[np.isneginf(a)] = -_INF
    return a


def configure(h: highspy.Highs, opts: SolveOptions) -> None:
    h.setOptionValue("output_flag", False)
    if opts.time_limit is not None:
        h.setOptionValue("time_limit", float(opts.time_limit))
    h.setOptionValue("mip_rel_gap", float(opts.mip_gap))
    h.setOptionValue("mip_feasibility_tolerance", MIP_FEASIBILITY_TOLERANCE)
    if opts.seed is not None:
        h.setOptionValue("random_seed", int(opts.seed))
    h.setOptionValue("mip_max_nodes", int(opts.max_nodes) if opts.max_nodes is not None else 2147483647)


def read_status(h: highspy.Highs, is_mip: bool, elapsed: float) -> SolveResult:
    """Map HiGHS's model status and info to a SolveResult (shared with the other backends' HiGHS)."""
    ms = h.getModelStatus()
    info = h.getInfo()
    S = highspy.HighsModelStatus
    has_primal = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.asarray(h.getSolution().col_value, float) if has_primal else None
    obj = info.objective_function_value if has_primal else None
    if is_mip:
        bound = info.mip_dual_bound if np.isfinite(info.mip_dual_bound) else None
        gap = info.mip_gap if has_primal and np.isfinite(info.mip_gap) else None
    else:
        bound, gap = (obj, 0.0) if ms == S.kOptimal else (None, None)
    if ms == S.kOptimal:
        status = OPTIMAL
    elif ms in (S.kInfeasible,):
        status = INFEASIBLE
    elif ms == S.kUnboundedOrInfeasible:
        status = INFEASIBLE
    elif ms == S.kUnbounded:
        status = UNBOUNDED
    elif ms in (S.kTimeLimit, S.kIterationLimit, S.kInterrupt, S.kSolutionLimit, S.kObjectiveBound,
                S.kObjectiveTarget):
        status = FEASIBLE if has_primal else NO_SOLUTION
    else:
        status = FEASIBLE if has_primal else ERROR
    return SolveResult(status, obj, bound, gap, elapsed, x, message=str(h.modelStatusToString(ms)))


class HighsBackend(Backend):
    name = "highs"

    def _build(self, objective, names):
        lm = self.lm
        h = new_highs()
        lp = highspy.HighsLp()
        lp.num_col_ = lm.ncols
        lp.num_row_ = lm.nrows
        lp.col_cost_ = np.asarray(objective, float)
        lp.col_lower_ = _finite(lm.lower)
        lp.col_upper_ = _finite(lm.upper)
        lp.row_lower_ = _finite(lm.row_lower)
        lp.row_upper_ = _finite(lm.row_upper)
        start, index, value = lm.csc()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start.astype(np.int32)
        lp.a_matrix_.index_ = index.astype(np.int32)
        lp.a_matrix_.value_ = value
        self.is_mip = bool(lm.integrality.any())
        if self.is_mip:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in lm.integrality]
        if names:
            lp.col_names_ = lm.var_names(safe=True)
            lp.row_names_ = lm.row_names(safe=True)
        st = h.passModel(lp)
        if st == highspy.HighsStatus.kError:
            raise NumericalError("numerical failure: HiGHS rejected the model (a coefficient or bound out of the range "
                                 "it accepts); the inputs are probably badly scaled")
        self.h = h
        self._extra_rows = 0

    @property
    def native(self) -> highspy.Highs:
        return self.h

    def set_objective(self, objective):
        n = self.lm.ncols
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(objective, float))

    def fix_columns(self, cols, values):
        cols = np.asarray(cols, np.int32)
        v = np.asarray(values, float)
        self.h.changeColsBounds(len(cols), cols, v, v)

    def add_row(self, name, cols, vals, lower, upper):
        cols = np.asarray(cols, np.int32)
        self.h.addRow(float(max(lower, -_INF)), float(min(upper, _INF)), len(cols), cols, np.asarray(vals, float))
        self._extra_rows += 1

    def _solve(self, opts: SolveOptions, start=None) -> SolveResult:
        if self.lm.ncols == 0:
            return empty_result()
        h = self.h
        configure(h, opts)
        subs = []
        if opts.progress is not None and self.is_mip:
            cb = _progress_callback(opts.progress)
            subs += [(h.cbMipImprovingSolution, cb), (h.cbMipInterrupt, cb)]
        if opts.root_rounds is not None and self.is_mip:
            subs.append((h.cbMipInterrupt, _rounds_callback(int(opts.root_rounds))))
        for event, cb in subs:
            event.subscribe(cb)
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = list(np.asarray(start, float)) + [0.0] * (h.getNumCol() - len(start))
            sol.value_valid = True
            h.setSolution(sol)
        t0 = time.perf_counter()
        try:
            run_highs(h, opts.threads, opts.cancel)
        finally:
            for event, cb in subs:
                event.unsubscribe(cb)
        res = read_status(h, self.is_mip, time.perf_counter() - t0)
        if res.x is not None:
            res = SolveResult(res.status, res.objective, res.bound, res.gap, res.solve_seconds,
                              res.x[: self.lm.ncols], res.message)
        return res

    def write_model(self, path: str) -> None:
        st = self.h.writeModel(str(path))
        if st == highspy.HighsStatus.kError:
            raise OSError(f"HiGHS could not write the model to {path}")


def _rounds_callback(rounds: int):
    """Interrupt after ``rounds`` interrupt checks with a finite dual bound (the root cut rounds: HiGHS
    checks once per round, in the same order on every run with one thread)."""
    seen = [0]

    def cb(e):
        if np.isfinite(float(e.data_out.mip_dual_bound)):
            seen[0] += 1
            if seen[0] >= rounds:
                e.interrupt()

    return cb


def _progress_callback(fn):
    last = [0.0]

    def cb(e):
        d = e.data_out
        now = float(d.running_time)
        if now - last[0] < 0.25 and e.event_type != highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution:
            return
        last[0] = now
        inc = float(d.mip_primal_bound)
        bnd = float(d.mip_dual_bound)
        fn({"incumbent": inc if np.isfinite(inc) else None, "bound": bnd if np.isfinite(bnd) else None,
            "gap": float(d.mip_gap) if np.isfinite(d.mip_gap) else None, "elapsed": now})

    return cb
