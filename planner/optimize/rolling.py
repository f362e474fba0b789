"""The fleet over time solved at scale: a rolling horizon over the coupled model, with a proven bound.

With ``options.scaling`` the slots are coupled (``replica_flow``, ``min_up_time``, ``scale_down_delay``,
``vm_flow``), so the slot decomposition no longer applies, and the whole model grows too large to solve
within minutes for a week of hourly slots. :func:`solve_rolling`:

1. **Bound.** Every slot of the coupled model without its coupling is solved on its own
   (:mod:`planner.optimize.slot_bounds`: a bound from root cuts, then the slot MILP over a few
   deployment bases for a plan). Coupling only adds constraints and startup costs (all >= 0), so the sum of
   the slots' proven bounds is a lower bound of the coupled optimum; their plans together are the
   per-slot plan the windows start from.
2. **Windows.** The coupled model is solved on windows of ``window`` slots, committing the first
   ``commit`` of each: the rows of the window's slots, over the window's columns and the earlier columns
   they reference (fixed at their committed values: the fleet running before the window, recent starts
   for ``min_up_time``, recent loads for ``scale_down_delay``). Each window is a MILP of a few slots; the
   uncommitted tail is the overlap that lets a window see the demand ahead. When the per-slot plan is
   itself a plan of the coupled model (no ``max_change``, ``min_up_slots`` or scale-down delay binds it:
   checked row by row), the windows start from it and may only use the configs it runs within
   ``SUPPORT_REACH`` slots (their replica counts free; clock and pool changes cost nothing): small MILPs
   that decide which replicas to keep running rather than stop and restart, stopped at their root
   (``WINDOW_NODES``). Each window then starts from a feasible solution, so the rolling horizon is
   *anytime*: at the time limit the slots not yet committed keep the per-slot plan; and segments of
   ``SEGMENT`` slots are rolled at the same time (:func:`_segments`). Otherwise the windows range over
   every config, one after the other.
3. The assembled solution is a plan of the whole coupled model (every row holds: each window enforced
   its own rows with the earlier columns fixed); its gap is measured against the bound of step 1. With a
   time limit and time left, the slots furthest above their bound are solved in full (from the plan) to
   raise their bounds (:func:`planner.optimize.slot_bounds.refine_bounds`).

Budgets and carbon caps couple all slots at once; with them the whole model is solved instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from formulations import OBJECTIVE_EXPRESSION, SECONDARY, LinearModel, objective_vector
from planner.optimize.backends import SolveOptions, get_backend
from planner.optimize.backends.base import INFEASIBLE, NO_SOLUTION, UNBOUNDED
from planner.optimize.extract import make_plan
from planner.optimize.slot_bounds import SlotModels, refine_bounds, result_of, solve_slots, submodel, worker_count
from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT, raise_for, tie_break

DEFAULT_WINDOW = 6
"""Slots per window of the rolling horizon."""
DEFAULT_COMMIT = 3
"""Slots each window commits (the rest is the overlap with the next)."""
BOUND_SHARE = 0.7
"""Share of the time limit the per-slot solve (bound and starting plan) may take."""
SUPPORT_REACH = 1
"""Windows over a per-slot plan may use the configs it runs within this many slots."""
WINDOW_GAP = 1e-3
"""Relative MIP gap of the windows over a per-slot plan."""
RESERVE_S = 2.0
"""Seconds kept for the tie-break and the plan within the time limit, plus ``POST_S_PER_COLUMN``."""
POST_S_PER_COLUMN = 1.2e-5
"""Seconds per column of the coupled model kept for the tie-break and the plan (10 s for the week)."""
MIN_WINDOW_S = 0.5
"""With a time limit, windows over a per-slot plan stop when less than this is left."""
WINDOW_NODES = 1
"""Branch-and-bound nodes of a window over a per-slot plan: its root, with HiGHS's root heuristics."""


def plan_columns(plan, sc, md, v, ncols: int) -> np.ndarray:
    """A plan's decisions as column values of the coupled model (``v``): replicas, assignments, routes,
    unserved rates, VMs; starts and stops from their changes (the initial fleet before the first slot).
    Columns the plan does not state (fallback rates) stay 0. Used as the windows' starting point."""
    x = np.zeros(ncols)
    rix = {r: i for i, r in enumerate(sc.regions)}
    kix = {k: i for i, k in enumerate(sc.classes)}
    oix = {o: i for i, o in enumerate(sc.origins)}
    cix = {f"{sc.regions[r]}/{key}": (r, c) for r in range(len(sc.regions))
           for c, key in zip(md.configs["c"], md.configs["key"])}
    ncol = {k: c for k, c in zip(zip(v.n["r"], v.n["c"], v.n["t"]), v.n["col"])}
    ycol = {k: c for k, c in zip(zip(v.y["k"], v.y["r"], v.y["c"], v.y["t"]), v.y["col"])}
    xcol = {k: c for k, c in zip(zip(v.x["k"], v.x["o"], v.x["r"], v.x["t"]), v.x["col"])}
    ucol = {k: c for k, c in zip(zip(v.u["k"], v.u["o"], v.u["t"]), v.u["col"])}
    for t, sl in enumerate(plan.slots):
        for d in sl.deployments:
            rc = cix.get(d.id)
            if rc is None:
                continue
            if (rc[0], rc[1], t) in ncol:
                x[ncol[(rc[0], rc[1], t)]] = d.replicas
            for cl in d.classes:
                col = ycol.get((kix[cl.class_], rc[0], rc[1], t))
                if col is not None:
                    x[col] = cl.rate_rps
        for r in sl.routing:
            col = xcol.get((kix[r.class_], oix[r.origin], rix[r.region], t))
            if col is not None:
                x[col] = r.rate_rps
        for u in sl.unserved:
            col = ucol.get((kix[u.class_], oix[u.origin], t))
            if col is not None:
                x[col] = u.rate_rps
    if v.vm is not None:
        vix = {(row.region, row.name, row.market): row.v for row in md.vms.itertuples(index=False)}
        vcol = {k: c for k, c in zip(zip(v.vm["v"], v.vm["t"]), v.vm["col"])}
        for t, sl in enumerate(plan.slots):
            for q in sl.vms or []:
                col = vcol.get((vix.get((q.region, q.vm, q.market)), t))
                if col is not None:
                    x[col] = q.count
    from planner.optimize.extract import _scaling_from_replicas

    return _scaling_from_replicas(md, v, x)


def _feasible(lm: LinearModel, trow, tcol, tval, x: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether ``x`` satisfies every bound and row of ``lm`` (within ``tol``, relative to the row's size)."""
    if (x < lm.lower - tol).any() or (x > lm.upper + tol).any():
        return False
    act = np.bincount(trow, weights=tval * x[tcol], minlength=lm.nrows)
    scale = 1.0 + np.abs(act)
    return bool(((act >= lm.row_lower - tol * scale) & (act <= lm.row_upper + tol * scale)).all())


def _complete(lm: LinearModel, trow, tcol, x0: np.ndarray, backend: str, opts: SolveOptions) -> np.ndarray:
    """Fill the columns a plan does not state (``fallback`` rates) for ``x0``: a small LP over the rows
    that use them, every other column fixed at ``x0``. Returns ``x0`` unchanged when it has none or the
    LP finds nothing."""
    blk = next((b for b in lm.var_blocks if b.name == "fallback"), None)
    if blk is None or blk.size == 0:
        return x0
    free = np.zeros(lm.ncols, bool)
    free[blk.start:blk.start + blk.size] = True
    rows = np.zeros(lm.nrows, bool)
    rows[trow[free[tcol]]] = True
    cols = np.zeros(lm.ncols, bool)
    cols[tcol[rows[trow]]] = True
    cols |= free
    lo, up = lm.lower.copy(), lm.upper.copy()
    fixed = cols & ~free
    lo[fixed] = up[fixed] = x0[fixed]
    sub = submodel(lm, cols, rows, lo, up)
    r = get_backend(backend)(sub, np.zeros(sub.ncols)).solve(replace(opts, time_limit=None, progress=None))
    if not r.has_solution:
        return x0
    out = x0.copy()
    out[np.nonzero(cols)[0][free[cols]]] = r.x[free[cols]]
    return out


def _support(md, v, x0: np.ndarray, ncols: int, reach: int) -> np.ndarray:
    """Replica columns a window may use: (r, c, t) whose config runs in the per-slot plan within ``reach``
    slots of t (any other replica column is fixed at 0). Everything else stays free."""
    n = v.n.assign(on=x0[v.n["col"].to_numpy()] > 0.5)
    used = n.loc[n["on"], ["r", "c", "t"]]
    near = pd.concat([used.assign(t=used["t"] + d) for d in range(-reach, reach + 1)]).drop_duplicates()
    ok = n[["r", "c", "t", "col"]].merge(near, on=["r", "c", "t"])["col"].to_numpy()
    allowed = np.ones(ncols, bool)
    allowed[v.n["col"].to_numpy()] = False
    allowed[ok] = True
    return allowed


def reprice(plan, scenario):
    """``plan``, solved slot by slot without ``options.scaling``, re-priced in the coupled model of
    ``scenario`` (the same scenario with ``options.scaling``): the same fleet per slot, with the starts
    and stops its changes imply and their startup costs, as a Plan (status ``feasible``). Raises
    InputError when the fleet breaks a coupling rule (``max_change``, ``min_up_slots``, a scale-down
    delay), which the per-slot plan does not know."""
    from planner.errors import InputError
    from planner.optimize.prepare import prepare

    sc, md, lm, v, secs = prepare(scenario, plan.objective.name, {})
    obj = sc.options.objective.value
    trow, tcol, tval = lm.triplets()
    x = _complete(lm, trow, tcol, plan_columns(plan, sc, md, v, lm.ncols), "highs", SolveOptions())
    if not _feasible(lm, trow, tcol, tval, x):
        raise InputError("the per-slot plan breaks a coupling rule of options.scaling, so it has no price there")
    info = dict(backend=plan.solver.backend, status="per-slot plan re-priced with the coupled model's startup costs",
                gap=None, bound=None, mip_gap=plan.solver.mip_gap, time_limit=None, threads=plan.solver.threads,
                seed=plan.solver.seed, tie_break="none", variables=lm.ncols, constraints=lm.nrows,
                integer_variables=int(lm.integrality.sum()), build_seconds=secs, solve_seconds=0.0,
                slots_solved_separately=True)
    return make_plan(sc, md, lm, v, obj, x, "feasible", info, None)


SEGMENT = 24
"""Slots per segment: over a per-slot plan, segments of the horizon are rolled at the same time (see
:func:`_segments`)."""


def _segments(sc, T: int) -> list[tuple[int, int]]:
    """Segments of ``SEGMENT`` slots rolled independently (in parallel) over a per-slot plan: each keeps the
    per-slot plan in its last slot, so the next segment starts from exactly the fleet it assumed. Only when
    nothing couples more than two neighbouring slots (``min_up_slots`` 1, no scale-down delay): otherwise
    one segment."""
    sc_opts = sc.options.scaling
    if sc_opts is not None and (sc_opts.min_up_slots > 1 or sc_opts.scale_down_delay_slots > 0):
        return [(0, T)]
    return [(a, min(T, a + SEGMENT)) for a in range(0, T, SEGMENT)]


@dataclass
class _Rolled:
    x: np.ndarray
    done: int = 0
    windows: int = 0
    solve_secs: float = 0.0
    worst_gap: float = 0.0
    kept: int = 0
    skipped: int = 0


class _Windows:
    """Step 2 of the module docstring: windows over segments of the horizon."""

    def __init__(self, sm: SlotModels, v, x0, backend, opts, trow, tcol, window, commit, restricted):
        lm, md = sm.lm, sm.md
        self.lm, self.md, self.v, self.x0, self.primary = lm, md, v, x0, sm.primary
        self.backend, self.opts, self.trow, self.tcol = backend, opts, trow, tcol
        self.window, self.commit, self.restricted = window, commit, restricted
        self.col_slot, self.row_slot, self.scale = sm.all_col_slot, sm.all_row_slot, sm.coupling_cols
        self.lo, self.up = lm.lower.copy(), lm.upper.copy()
        if restricted:
            self.up[~_support(md, v, x0, lm.ncols, SUPPORT_REACH)] = 0.0

    def run(self, segs, deadline, lower, t_start) -> _Rolled:
        """Roll every segment (``opts.threads`` at a time); returns the assembled plan."""
        import threading

        T = self.md.scenario.n_slots
        n_windows = sum(len(range(a, b, self.commit)) for a, b in segs)
        lock = threading.Lock()
        left = [n_windows]
        progress = {"slots": 0}
        x = self.x0.copy() if self.restricted else np.zeros(self.lm.ncols)
        out = _Rolled(x)
        workers = worker_count(len(segs), self.opts.threads, self.backend)

        def limit_for():
            if deadline is None:
                return None
            with lock:
                n = left[0]
                left[0] -= 1
            rem = deadline - time.perf_counter()
            return max(MIN_WINDOW_S, rem * 0.9 * min(workers, n) / max(n, 1))

        def segment(a0, a1):
            xs = x if workers == 1 else x.copy()
            # over a per-slot plan, one thread per window whatever the workers: the same plan on any machine
            r = self._roll(xs, a0, a1, T, deadline, limit_for, threads=1 if self.restricted else self.opts.threads)
            with lock:
                sel = (self.col_slot >= a0) & (self.col_slot < a1)
                x[sel] = xs[sel]
                out.windows += r.windows
                out.solve_secs += r.solve_secs
                out.worst_gap = max(out.worst_gap, r.worst_gap)
                out.kept += r.kept
                out.skipped += r.skipped
                progress["slots"] += r.done - a0
                if self.opts.progress is not None:
                    self.opts.progress({"incumbent": None, "bound": lower, "gap": None,
                                        "elapsed": time.perf_counter() - t_start,
                                        "slots_done": progress["slots"], "slots": T})

        if workers == 1:
            for a0, a1 in segs:
                segment(a0, a1)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetplan-window") as pool:
                for f in [pool.submit(segment, a0, a1) for a0, a1 in segs]:
                    f.result()
        if self.restricted:
            from planner.optimize.extract import _scaling_from_replicas

            out.x = _scaling_from_replicas(self.md, self.v, x)
        return out

    def _roll(self, x, a0, a1, T, deadline, limit_for, threads) -> _Rolled:
        """Windows over slots [a0, a1), committing into ``x``. Over a per-slot plan, a segment that is not
        the last keeps the per-slot plan in its last slot (see :func:`_segments`)."""
        from planner.optimize.extract import _scaling_from_replicas

        lm, opts, primary, x0 = self.lm, self.opts, self.primary, self.x0
        col_slot, row_slot, trow, tcol = self.col_slot, self.row_slot, self.trow, self.tcol
        out = _Rolled(x, done=a0)
        lo, up = self.lo, self.up
        if self.restricted and a1 < T:
            keep_last = (col_slot == a1 - 1) & ~self.scale
            lo, up = lo.copy(), up.copy()
            lo[keep_last] = up[keep_last] = x0[keep_last]
        starts = list(range(a0, a1, self.commit))
        for a in starts:
            if self.restricted and deadline is not None and deadline - time.perf_counter() < MIN_WINDOW_S:
                out.skipped += a1 - a
                break  # out of time: the per-slot plan stands for the slots left
            b = min(T, a + self.window)
            rows = (row_slot >= a) & (row_slot < b)
            ref = np.zeros(lm.ncols, bool)
            ref[tcol[rows[trow]]] = True
            cols = ((col_slot >= a) & (col_slot < b)) | ref
            past = cols & (col_slot < a)
            wlo, wup = lo.copy(), up.copy()
            wlo[past] = wup[past] = x[past]
            sub = submodel(lm, cols, rows, wlo, wup)
            limit = limit_for()
            start = np.where(col_slot < a, x, x0)
            if self.restricted:  # the committed slots, then the per-slot plan: starts and stops re-derived
                start = _scaling_from_replicas(self.md, self.v, start)
            be = get_backend(self.backend)(sub, primary[cols])
            # over a per-slot plan, the window's gains (startups saved) are a small share of its objective:
            # solve it closely (it is small)
            wgap = min(opts.mip_gap, WINDOW_GAP) if self.restricted else opts.mip_gap
            r = be.solve(replace(opts, time_limit=limit, progress=None, mip_gap=wgap, threads=threads,
                                 max_nodes=WINDOW_NODES if self.restricted else None), start=start[cols])
            out.windows += 1
            out.solve_secs += r.solve_seconds
            if r.status in (INFEASIBLE, UNBOUNDED, NO_SOLUTION) or not r.has_solution:
                if self.restricted:
                    out.skipped += a1 - a
                    break  # keep the per-slot plan from here on
                raise_for(r, self.md.scenario, replace(opts, time_limit=limit),
                          where=f" (rolling-horizon window of slots {a}-{b - 1})")
            xw = r.x
            if self.restricted and float(primary[cols] @ xw) > float(primary[cols] @ start[cols]):
                xw = start[cols]  # the window found nothing better than where it started (time limit)
                out.kept += 1
            elif r.gap is not None:
                out.worst_gap = max(out.worst_gap, float(r.gap))
            last = b if b == T else min(a1, a + self.commit)
            keep = (col_slot >= a) & (col_slot < last)
            x[np.nonzero(cols)[0][keep[cols]]] = xw[keep[cols]]
            out.done = last
        return out


def solve_rolling(sc, md, lm, v, obj: str, backend: str, opts: SolveOptions, build_secs: float,
                  window: int = DEFAULT_WINDOW, commit: int = DEFAULT_COMMIT):
    """Steps 1-3 of the module docstring."""
    from planner.optimize.extract import _scaling_from_replicas

    t_start = time.perf_counter()
    T = sc.n_slots
    window, commit = max(1, int(window)), max(1, min(int(commit), int(window)))
    primary = objective_vector(lm, md, obj)
    # 1. the bound and the per-slot plan (planner.optimize.slot_bounds), on a share of the time limit;
    # the time limit covers the whole solve: building (done), and the tie-break and plan (kept aside)
    sm = SlotModels(lm, md, primary)
    budget = None
    if opts.time_limit is not None:
        budget = max(0.5 * opts.time_limit, opts.time_limit - build_secs - RESERVE_S - POST_S_PER_COLUMN * lm.ncols)
    slot_deadline = None if budget is None else t_start + BOUND_SHARE * budget

    def slot_progress(done, el):
        if opts.progress is not None:
            opts.progress({"incumbent": None, "bound": None, "gap": None, "elapsed": el, "slots_done": done,
                           "slots": T, "stage": "slots"})

    outs = solve_slots(sm, backend, opts, slot_deadline, slot_progress)
    def first_failure(o):  # report the slot that failed, not the ones cancelled because of it
        return 0 if o.status in (INFEASIBLE, UNBOUNDED) else 2 if o.status in ("ok", "cancelled") else 1

    for o in sorted(outs, key=first_failure):
        if o.status != "ok":
            raise_for(result_of(o), sc, replace(opts, time_limit=None if budget is None else BOUND_SHARE * budget),
                      where=f" for slot {o.t}")
    bounds = [o.bound for o in outs]
    lower = sum(bounds) if all(b is not None for b in bounds) else None
    n_whole = sum(o.whole for o in outs)
    x0 = np.zeros(lm.ncols)
    for o in outs:
        x0[sm.columns(o.t)] = o.x
    ints = lm.integrality
    x0[ints] = np.round(x0[ints])
    x0 = _scaling_from_replicas(md, v, x0)
    t_bound = time.perf_counter() - t_start
    trow, tcol, tval = lm.triplets()
    # the per-slot plan is a plan of the coupled model too when no rule binds it (startup costs only):
    # then the windows only ever improve on it, over the configs it runs nearby, and may stop any time;
    # without a time limit they stop at their root (WINDOW_NODES), so that the plan is the same on every
    # run. Otherwise they range over every config, and need DEFAULT_COUPLED_TIME_LIMIT without a limit.
    restricted = _feasible(lm, trow, tcol, tval, x0)
    if budget is not None:
        deadline = t_start + budget
    elif restricted:
        deadline = None
    else:
        deadline = time.perf_counter() + DEFAULT_COUPLED_TIME_LIMIT
    # 2. windows
    ctx = _Windows(sm, v, x0, backend, opts, trow, tcol, window, commit, restricted)
    t_windows = time.perf_counter()
    segs = _segments(sc, T) if restricted else [(0, T)]
    stats = ctx.run(segs, deadline, lower, t_start)
    t_windows = time.perf_counter() - t_windows
    x = stats.x
    solve_secs = t_windows
    n_windows = stats.windows
    total = float(primary @ x)
    refined = 0
    if (budget is not None and lower is not None and deadline - time.perf_counter() > 1.0
            and total - lower > opts.mip_gap * abs(total)):
        # 3. time left within the limit: the slots furthest above their bound solved in full, for a closer bound
        t_ref = time.perf_counter()
        refined = refine_bounds(sm, outs, x, backend, opts, deadline)
        lower = sum(o.bound for o in outs)
        solve_secs += time.perf_counter() - t_ref
    gap = None
    if lower is not None:
        gap = 0.0 if total - lower <= 1e-12 * max(1.0, abs(total)) else (total - lower) / max(abs(total), 1e-12)
    tie = sc.options.tie_break.value
    sec = SECONDARY[obj] if tie != "none" else None
    if sec is not None:
        be = get_backend(backend)(lm, primary)
        remaining = None if deadline is None else max(2.0, deadline - time.perf_counter())
        x2, tie, ok, s2 = tie_break(be, lm, primary, lm.expressions[OBJECTIVE_EXPRESSION[sec]], x, remaining,
                                    replace(opts, progress=None), "routing")
        solve_secs += s2
        if ok:
            x = x2
        else:
            sec = None
    ok = gap is not None and gap <= opts.mip_gap + 1e-12
    how = "over the configs the per-slot plan runs nearby" if restricted else "over every config"
    whole_note = f"; {n_whole} needed the whole slot MILP" if n_whole else ""
    whole_note += f"; {refined} bound(s) raised by the whole slot MILP in the time left" if refined else ""
    kept = f"; {stats.kept} kept their start" if stats.kept else ""
    tail = "" if not stats.skipped else f"; {stats.skipped} slot(s) keep the per-slot plan (time limit)"
    info = dict(
        backend=backend,
        status=(f"rolling horizon: {n_windows} window(s) of {window} slots committing {commit}, {how}; worst window "
                f"gap {stats.worst_gap:.2e}{kept}; bound from the {T} "
                f"slots solved without coupling (their plan {float(primary @ x0):.6g}{whole_note}){tail}"),
        gap=gap, bound=lower, mip_gap=opts.mip_gap, time_limit=opts.time_limit, threads=opts.threads,
        seed=opts.seed, tie_break=tie, variables=lm.ncols, constraints=lm.nrows,
        integer_variables=int(lm.integrality.sum()),
        build_seconds=build_secs, solve_seconds=solve_secs + t_bound,
        slots_solved_separately=False,
    )
    return make_plan(sc, md, lm, v, obj, x, "optimal" if ok else "feasible", info, sec)
