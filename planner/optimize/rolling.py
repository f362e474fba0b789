"""The fleet over time solved at scale: a rolling horizon over the coupled model, with a proven bound.

With ``options.scaling`` the slots are coupled (``replica_flow``, ``min_up_time``, ``scale_down_delay``,
``vm_flow``), so the slot decomposition no longer applies, and the whole model grows too large to solve
within minutes for a week of hourly slots. :func:`solve_rolling`:

1. **Bound.** The same scenario without ``options.scaling`` is solved slot by slot (the existing
   decomposition). Coupling only adds constraints and startup costs (all >= 0), so the sum of the slots'
   proven bounds is a lower bound of the coupled optimum; its plan is also the per-slot baseline.
2. **Windows.** The coupled model is solved on windows of ``window`` slots, committing the first
   ``commit`` of each: the rows of the window's slots, over the window's columns and the earlier columns
   they reference (fixed at their committed values: the fleet running before the window, recent starts
   for ``min_up_time``, recent loads for ``scale_down_delay``). Each window is a MILP of a few slots; the
   uncommitted tail is the overlap that lets a window see the demand ahead. When the per-slot plan is
   itself a plan of the coupled model (no ``max_change``, ``min_up_slots`` or scale-down delay binds it:
   checked row by row), the windows start from it and may only use the configs it runs within
   ``SUPPORT_REACH`` slots (their replica counts free; clock and pool changes cost nothing): small MILPs
   that decide which replicas to keep running rather than stop and restart. Each window then starts
   from a feasible solution, so the rolling horizon is *anytime*: at the time limit the slots not yet
   committed keep the per-slot plan. Otherwise the windows range over every config.
3. The assembled solution is a plan of the whole coupled model (every row holds: each window enforced
   its own rows with the earlier columns fixed); its gap is measured against the bound of step 1.

Budgets and carbon caps couple all slots at once; with them the whole model is solved instead.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from formulations import OBJECTIVE_EXPRESSION, SECONDARY, LinearModel, objective_vector
from planner.optimize.backends import SolveOptions, get_backend
from planner.optimize.backends.base import INFEASIBLE, NO_SOLUTION, UNBOUNDED
from planner.optimize.extract import make_plan
from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT, raise_for, tie_break

DEFAULT_WINDOW = 6
"""Slots per window of the rolling horizon."""
DEFAULT_COMMIT = 3
"""Slots each window commits (the rest is the overlap with the next)."""
BOUND_SHARE = 0.6
"""Share of the time limit the per-slot solve (bound and starting plan) may take."""
SUPPORT_REACH = 1
"""Windows over a per-slot plan may use the configs it runs within this many slots."""
WINDOW_GAP = 1e-3
"""Relative MIP gap of the windows over a per-slot plan."""
RESERVE_S = 3.0
"""Seconds kept for the tie-break and the plan when windows stop at the time limit."""


def _slot_of(lm: LinearModel, blocks, size: int) -> np.ndarray:
    """Slot of every column (or row): from each block's ``slot`` dimension; -1 where a block has none."""
    out = np.full(size, -1, np.int64)
    for b in blocks:
        if "slot" in b.dims:
            out[b.start:b.start + b.size] = b.index[:, b.dims.index("slot")]
    return out


def submodel(lm: LinearModel, cols: np.ndarray, rows: np.ndarray, lower: np.ndarray,
             upper: np.ndarray) -> LinearModel:
    """The model restricted to ``cols`` (bool mask, in column order) and ``rows`` (bool mask): the same
    blocks and labels, columns renumbered, bounds from ``lower``/``upper``. Every nonzero of a kept row
    must be on a kept column."""
    sub = LinearModel(labels=lm.labels)
    new = np.full(lm.ncols, -1, np.int64)
    new[np.nonzero(cols)[0]] = np.arange(int(cols.sum()))  # blocks keep their order: ranks are the new numbers
    for b in lm.var_blocks:
        sel = cols[b.start:b.start + b.size]
        if not sel.any():
            continue
        sub.add_vars(b.name, b.dims, b.index[sel], lower[b.start:b.start + b.size][sel],
                     upper[b.start:b.start + b.size][sel], integer=b.integer, doc=b.doc)
    for b in lm.con_blocks:
        keep = rows[b.start:b.start + b.size]
        if not keep.any():
            continue
        local = np.full(b.size, -1, np.int64)
        local[keep] = np.arange(int(keep.sum()))
        nz = keep[b.rows]
        c = new[b.cols[nz]]
        assert (c >= 0).all(), f"{b.name}: a kept row uses a column outside the window"
        sub.add_constraints(b.name, b.dims, b.index[keep], local[b.rows[nz]], c, b.vals[nz], b.lower[keep],
                            b.upper[keep], doc=b.doc)
    idx = np.nonzero(cols)[0]
    for name, vec in lm.expressions.items():
        sub.expressions[name] = vec[idx]
    return sub


def per_slot_bound(scenario, objective, backend, opts: SolveOptions, solve):
    """Step 1: the scenario without ``options.scaling`` solved slot by slot (``solve``: the planner's
    solve entry point). Returns (plan, bound)."""
    plain = scenario.without_scaling()
    plan = solve(plain, objective, backend, time_limit=opts.time_limit, mip_gap=opts.mip_gap,
                 threads=opts.threads, seed=opts.seed, explain=opts.explain)
    b = plan.solver.bound
    if b is None:
        b = plan.objective.value if plan.status == "optimal" else None
    return plan, b


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


def solve_rolling(sc, md, lm, v, obj: str, backend: str, opts: SolveOptions, build_secs: float, solve,
                  window: int = DEFAULT_WINDOW, commit: int = DEFAULT_COMMIT):
    """Steps 1-3 of the module docstring; ``solve`` is the planner's solve entry point (for the bound)."""
    from planner.optimize.extract import _scaling_from_replicas

    t_start = time.perf_counter()
    T = sc.n_slots
    window, commit = max(1, int(window)), max(1, min(int(commit), int(window)))
    # 1. the bound (and the per-slot plan), on a share of the time limit; without one, the slots are
    # solved to their gap (as the slot decomposition does) and the windows get DEFAULT_COUPLED_TIME_LIMIT
    share = None if opts.time_limit is None else BOUND_SHARE * opts.time_limit
    bopts = replace(opts, time_limit=share, progress=None)
    base_plan, lower = per_slot_bound(sc, obj, backend, bopts, solve)
    t_bound = time.perf_counter() - t_start
    if opts.time_limit is None:
        deadline = time.perf_counter() + DEFAULT_COUPLED_TIME_LIMIT
    else:
        deadline = t_start + opts.time_limit
    primary = objective_vector(lm, md, obj)
    trow, tcol, tval = lm.triplets()
    x0 = _complete(lm, trow, tcol, plan_columns(base_plan, sc, md, v, lm.ncols), backend, opts)
    # the per-slot plan is a plan of the coupled model too when no rule binds it (startup costs only):
    # then the windows only ever improve on it, over the configs it runs nearby, and may stop any time
    restricted = _feasible(lm, trow, tcol, tval, x0)
    # 2. windows
    col_slot = _slot_of(lm, lm.var_blocks, lm.ncols)
    row_slot = _slot_of(lm, lm.con_blocks, lm.nrows)
    lo, up = lm.lower.copy(), lm.upper.copy()
    if restricted:
        up[~_support(md, v, x0, lm.ncols, SUPPORT_REACH)] = 0.0
    x = x0.copy() if restricted else np.zeros(lm.ncols)
    starts = list(range(0, T, commit))
    n_windows = len(starts)
    solve_secs = 0.0
    worst_gap = 0.0
    improved_not = 0
    done = 0
    t_windows = time.perf_counter()
    for i, a in enumerate(starts):
        if restricted and deadline is not None and deadline - time.perf_counter() < RESERVE_S:
            break  # out of time: the per-slot plan stands for the slots left
        b = min(T, a + window)
        rows = (row_slot >= a) & (row_slot < b)
        ref = np.zeros(lm.ncols, bool)
        ref[tcol[rows[trow]]] = True
        cols = ((col_slot >= a) & (col_slot < b)) | ref
        past = cols & (col_slot < a)
        wlo, wup = lo.copy(), up.copy()
        wlo[past] = wup[past] = x[past]
        sub = submodel(lm, cols, rows, wlo, wup)
        limit = None
        if deadline is not None:
            left = deadline - time.perf_counter() - (RESERVE_S if restricted else 0.0)
            limit = max(0.5, left * 0.9 / (n_windows - i))
        start = np.where(col_slot < a, x, x0)
        if restricted:  # the committed slots, then the per-slot plan: starts and stops re-derived across
            start = _scaling_from_replicas(md, v, start)
        be = get_backend(backend)(sub, primary[cols])
        # over a per-slot plan, the window's gains (startups saved) are a small share of its objective:
        # solve it closely (it is small)
        wgap = min(opts.mip_gap, WINDOW_GAP) if restricted else opts.mip_gap
        r = be.solve(replace(opts, time_limit=limit, progress=None, mip_gap=wgap), start=start[cols])
        solve_secs += r.solve_seconds
        if r.status in (INFEASIBLE, UNBOUNDED, NO_SOLUTION) or not r.has_solution:
            if restricted:
                break  # keep the per-slot plan from here on
            raise_for(r, sc, replace(opts, time_limit=limit), where=f" (rolling-horizon window of slots {a}-{b - 1})")
        xw = r.x
        if restricted and float(primary[cols] @ xw) > float(primary[cols] @ start[cols]):
            xw = start[cols]  # the window found nothing better than where it started (time limit)
            improved_not += 1
        elif r.gap is not None:
            worst_gap = max(worst_gap, float(r.gap))
        last = b if b == T else min(T, a + commit)
        keep = (col_slot >= a) & (col_slot < last)
        x[np.nonzero(cols)[0][keep[cols]]] = xw[keep[cols]]
        done = last
        if opts.progress is not None:
            opts.progress({"incumbent": None, "bound": lower, "gap": None, "elapsed": time.perf_counter() - t_start,
                           "slots_done": last, "slots": T})
    t_windows = time.perf_counter() - t_windows
    if restricted:
        x = _scaling_from_replicas(md, v, np.where(col_slot < done, x, x0))
    total = float(primary @ x)
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
    tail = "" if done >= T else f"; slots {done}-{T - 1} keep the per-slot plan (time limit)"
    info = dict(
        backend=backend,
        status=(f"rolling horizon: {n_windows} window(s) of {window} slots committing {commit}, {how}; worst window "
                f"gap {worst_gap:.2e}{f'; {improved_not} kept their start' if improved_not else ''}; bound from the {T} "
                f"slots solved without coupling ({t_bound:.0f} s; windows {t_windows:.0f} s){tail}"),
        gap=gap, bound=lower, mip_gap=opts.mip_gap, time_limit=opts.time_limit, threads=opts.threads,
        seed=opts.seed, tie_break=tie, variables=lm.ncols, constraints=lm.nrows,
        integer_variables=int(lm.integrality.sum()),
        build_seconds=build_secs, solve_seconds=solve_secs + (base_plan.solver.solve_seconds or 0.0),
        slots_solved_separately=False,
    )
    return make_plan(sc, md, lm, v, obj, x, "optimal" if ok else "feasible", info, sec)
