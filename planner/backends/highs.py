"""HiGHS through highspy: the whole matrix is handed over at once (``passModel``), no per-row calls.

Every HiGHS run in the planner goes through :func:`run_highs`, which keeps HiGHS usable when it is
called again and again in one long-running process:

* HiGHS keeps one task scheduler per calling thread, sized by the first run on that thread; a later
  run on the same thread that asks for another number of threads fails ("Not Set"). ``run_highs``
  resets this thread's scheduler whenever the requested size differs from the one it was made with.
* highspy >= 1.16 prints a banner to file descriptor 1 the first time a ``Highs`` object is made in a
  process. :func:`new_highs` makes that first object with descriptor 1 pointed at ``/dev/null``, so a
  library caller's stdout (and ``plan solve``'s JSON) stays clean.
* A run can be cancelled from another thread (``SolveOptions.cancel``): HiGHS's interrupt callbacks
  check the event and stop the solver within milliseconds.
"""

from __future__ import annotations

import os
import threading
import time

import highspy
import numpy as np

from .base import (
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

_tls = threading.local()  # per thread: the size of HiGHS's scheduler on this thread (0 = HiGHS's default)
_banner_lock = threading.Lock()
_banner_done = False


def _silence_banner() -> None:
    """Make the process's first ``Highs`` object with fd 1 on /dev/null (highspy prints its banner then)."""
    global _banner_done
    with _banner_lock:
        if _banner_done:
            return
        try:
            import sys

            sys.stdout.flush()
        except Exception:  # pragma: no cover - a closed or odd sys.stdout
            pass
        try:
            saved = os.dup(1)
        except OSError:  # fd 1 is closed: put /dev/null there for good (nothing else may land on it)
            from ..io import devnull_onto

            devnull_onto(1)
            highspy.Highs()
            _banner_done = True
            return
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            highspy.Highs()
            try:
                import ctypes

                ctypes.CDLL(None).fflush(None)  # C stdio buffers, in case the banner was buffered
            except Exception:  # pragma: no cover - no libc symbol table
                pass
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
        _banner_done = True


def new_highs() -> highspy.Highs:
    """A ``Highs`` object with logging off, made without anything reaching stdout."""
    if not _banner_done:
        _silence_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def _reset_scheduler() -> None:
    """Shut down this thread's HiGHS scheduler (highspy >= 1.16: per thread; older: the same call
    under its older name)."""
    reset = getattr(highspy.Highs, "resetThreadScheduler", None) or highspy.Highs.resetGlobalScheduler
    reset(True)


def prepare_thread(threads: int | None) -> None:
    """Make this thread's HiGHS scheduler fit a run with ``threads`` threads (None: HiGHS's default).

    A scheduler made for another size is shut down first; HiGHS makes a new one at the next run.
    """
    want = int(threads) if threads else 0
    have = getattr(_tls, "threads", None)
    if have is not None and want and want != have:
        _reset_scheduler()
        have = None
    if have is None:
        _tls.threads = want


def _scheduler_mismatch(h: highspy.Highs, st) -> bool:
    return st == highspy.HighsStatus.kError and h.getModelStatus() == highspy.HighsModelStatus.kNotset


def run_highs(h: highspy.Highs, threads: int | None = None, cancel: threading.Event | None = None):
    """``h.run()`` on this thread with ``threads`` threads; returns HiGHS's status.

    If the run fails before starting because this thread's scheduler was made elsewhere with another
    size (user code, another library), the scheduler is reset and the run tried once more. With
    ``cancel``, the run stops (HiGHS status: interrupted) soon after the event is set.
    """
    if cancel is not None and cancel.is_set():
        return highspy.HighsStatus.kWarning  # not run: the caller reads no solution
    want = int(threads) if threads else 0
    h.setOptionValue("threads", want)
    prepare_thread(want)
    subs = []
    if cancel is not None:
        def on_interrupt(e, _ev=cancel):
            if _ev.is_set():
                e.interrupt()

        for cbk in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            cbk.subscribe(on_interrupt)
            subs.append(cbk)
    try:
        st = h.run()
        if _scheduler_mismatch(h, st):
            _reset_scheduler()
            _tls.threads = want
            st = h.run()
        return st
    finally:
        for cbk in subs:
            cbk.unsubscribe(on_interrupt)


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
            from ..errors import NumericalError

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
            h.cbMipImprovingSolution.subscribe(cb)
            h.cbMipInterrupt.subscribe(cb)
            subs.append(cb)
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = list(np.asarray(start, float)) + [0.0] * (h.getNumCol() - len(start))
            sol.value_valid = True
            h.setSolution(sol)
        t0 = time.perf_counter()
        try:
            run_highs(h, opts.threads, opts.cancel)
        finally:
            for cb in subs:
                h.cbMipImprovingSolution.unsubscribe(cb)
                h.cbMipInterrupt.unsubscribe(cb)
        res = read_status(h, self.is_mip, time.perf_counter() - t0)
        if res.x is not None:
            res = SolveResult(res.status, res.objective, res.bound, res.gap, res.solve_seconds,
                              res.x[: self.lm.ncols], res.message)
        return res

    def write_model(self, path: str) -> None:
        st = self.h.writeModel(str(path))
        if st == highspy.HighsStatus.kError:
            raise OSError(f"HiGHS could not write the model to {path}")


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
