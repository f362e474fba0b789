"""Solving slot by slot.

Every constraint family except ``budget`` and ``carbon_cap`` is indexed by one slot, so without
those two the model is block diagonal: each slot is solved as its own (small) model, several at
once in worker processes, and the sum of the slot optima is the optimum. Ties separate too: holding
the primary at its optimum in total forces it to its optimum in every slot.

With a budget or carbon cap (coupling constraints ``sum_t g_jt(x_t) <= b_j``), the planner uses a
Lagrangian decomposition:

1. Solve the slots with the coupling priced in, ``min f_t + sum_j lambda_j g_jt``, for a sequence
   of multipliers (grown geometrically until the coupling holds, then bisected). Every slot solution
   found is kept in a menu.
2. ``L(lambda) = sum_t bound_t(lambda) - sum_j lambda_j b_j`` is a lower bound of the optimum for
   every lambda >= 0 (weak duality, with each slot's proven MILP bound); the best one is reported.
3. Pick one menu entry per slot by a small multiple-choice knapsack MILP that minimises the primary
   with every coupling constraint exact: a feasible plan for the whole model.
4. If its gap to the bound still exceeds the requested MIP gap, solve the whole model starting from
   it (time permitting), keeping whichever is better.

Finally ties are broken slot by slot with the slot's primary and coupling amounts held.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from formulations import OBJECTIVE_EXPRESSION, SECONDARY, build, objective_vector
from formulations.sets import restrict_slots
from planner.highs_runtime import new_highs, run_highs
from planner.optimize.backends import ERROR, INFEASIBLE, OPTIMAL, UNBOUNDED, SolveOptions, SolveResult, get_backend
from planner.optimize.backends.base import call_interruptibly
from planner.optimize.extract import make_plan
from planner.optimize.slot_bounds import worker_count
from planner.optimize.whole import DEFAULT_COUPLED_TIME_LIMIT, raise_for, tie_break

COUPLING = (("budget", "cost_usd", "budget_usd"), ("carbon_cap", "carbon_kg", "carbon_cap_kg"))
MAX_ROUNDS = 10


@dataclass
class SlotModel:
    t: int
    lm: object
    md: object
    cols: np.ndarray  # full-model columns of this slot's columns, in order
    primary: np.ndarray


def slot_task(a: dict) -> dict:
    """One slot (runs in a worker): solve ``a['weighted']`` (or take ``a['x']``), then the tie-break."""
    lm = a["lm"]
    opts: SolveOptions = a["opts"]
    be = get_backend(a["backend"])(lm, a["weighted"])
    t0 = time.perf_counter()
    if a.get("x") is None:
        r = be.solve(opts)
        out = {"t": a["t"], "status": r.status, "message": r.message, "objective": r.objective, "bound": r.bound,
               "x": r.x}
    else:
        out = {"t": a["t"], "status": OPTIMAL, "message": "", "objective": None, "bound": None, "x": a["x"]}
    out["tie"] = "none"
    if out["x"] is not None and a.get("secondary") is not None:
        for vec, ub in a.get("holds", ()):
            nz = np.nonzero(vec)[0]
            be.add_row("hold_coupling_share", nz, vec[nz], -np.inf, ub + max(1e-9 * abs(ub), 1e-9))
        remaining = None if opts.time_limit is None else opts.time_limit - (time.perf_counter() - t0)
        if a["mode"] == "routing":  # an LP: give it a moment even when the MILP used the slot's time
            remaining = None if remaining is None else max(remaining, 2.0)
        x, tie, _, _ = tie_break(be, lm, a["primary"], a["secondary"], out["x"], remaining, opts, a["mode"])
        out["x"], out["tie"] = x, tie
    out["seconds"] = time.perf_counter() - t0
    out["build_seconds"] = be.build_seconds
    return out


class SlotRunner:
    """The slot models and a pool of worker threads that solves them.

    Workers are threads of this process, not forked processes: HiGHS releases the GIL while it
    solves, keeps one task scheduler per thread, and a forked child of a process whose HiGHS
    scheduler already has threads inherits a broken copy of it (the second solve in a process
    failed). Threads also end with the process, whatever signal ends it, and need no pickling.
    The Pyomo backend is not thread-safe; its slots are solved one at a time (see PYOMO_LOCK).
    When a slot fails, or the caller is interrupted, the others are cancelled at once.
    """

    def __init__(self, sc, md, v, obj, backend, opts: SolveOptions):
        self.sc, self.obj, self.backend, self.opts = sc, obj, backend, opts
        self.T = sc.n_slots
        self.workers = worker_count(self.T, opts.threads, backend)
        self.models: list[SlotModel] = []
        for t in range(self.T):
            mdt = restrict_slots(md, [t])
            lmt, _ = build(mdt, coupling=False)
            frames = [f for f in (v.n, v.x, v.y, v.u, v.up, v.down, v.vm, v.vm_up, v.fb) if f is not None]
            cols = np.concatenate([f["col"].to_numpy()[f["t"].to_numpy() == t] for f in frames])
            assert len(cols) == lmt.ncols
            self.models.append(SlotModel(t, lmt, mdt, cols, objective_vector(lmt, mdt, obj)))
        self.md = md  # the whole model's sets
        self.pool = None
        self.build_seconds = 0.0
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._deadline: float | None = None  # the current round's (see run)
        self._left = 0

    def __enter__(self):
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fleetplan-slot")
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.cancel.set()
        if self.pool is not None:
            # running HiGHS solves stop within milliseconds once cancelled; don't wait for the others
            self.pool.shutdown(wait=exc_type is None, cancel_futures=True)

    def _time_limit(self) -> float | None:
        """This slot's time limit, taken as it starts: the time left until the round's deadline, shared
        among the slots not started yet (times the workers)."""
        if self._deadline is None:
            return None
        with self._lock:
            n = self._left
            self._left -= 1
        return max(0.5, (self._deadline - time.perf_counter()) * min(self.workers, n) / max(n, 1))

    def _task(self, a: dict) -> dict:
        if self._deadline is not None:
            a = dict(a, opts=replace(a["opts"], time_limit=self._time_limit()))
        if self.cancel.is_set():
            return {"t": a["t"], "status": "error", "message": "cancelled", "objective": None, "bound": None,
                    "x": None, "tie": "none", "seconds": 0.0, "build_seconds": 0.0}
        r = slot_task(dict(a, opts=replace(a["opts"], cancel=self.cancel)))
        if self.cancel.is_set() and r["status"] not in (OPTIMAL, INFEASIBLE, UNBOUNDED):
            r["message"] = "cancelled"  # stopped because another slot failed or the caller was interrupted
        return r

    def run(self, tasks: list[dict], progress=None, round_deadline: float | None = None) -> list[dict]:
        """Solve ``tasks``; with ``round_deadline`` (a ``time.perf_counter()`` instant), each slot's time
        limit is set when it starts: the time left until the deadline, shared among the slots not
        started yet (times the workers), so time that fast slots leave goes to the later ones."""
        results: dict[int, dict] = {}
        t0 = time.perf_counter()
        self.cancel.clear()  # each round starts afresh (a failure in an earlier round was handled there)
        self._deadline, self._left = round_deadline, len(tasks)

        def note(r):
            results[r["t"]] = r
            self.build_seconds += r.get("build_seconds", 0.0)
            if r["status"] in (INFEASIBLE, UNBOUNDED) or (r["status"] == ERROR and r["message"] != "cancelled"):
                self.cancel.set()  # the whole solve fails: stop the other slots now
            if progress is not None:
                progress(len(results), time.perf_counter() - t0)

        if self.pool is None:
            for a in tasks:  # on the main thread, in a helper thread so that signals reach it at once
                note(call_interruptibly(lambda o, a=a: self._task(dict(a, opts=o)),
                                        replace(a["opts"], cancel=self.cancel)))
        else:
            from concurrent.futures import FIRST_COMPLETED, wait

            pending = {self.pool.submit(self._task, a) for a in tasks}
            while pending:
                done, pending = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
                for f in done:
                    note(f.result())
        return [results[a["t"]] for a in tasks]

    def task(self, m: SlotModel, weighted, opts, secondary=None, mode="none", x=None, holds=()):
        return {"t": m.t, "lm": m.lm, "weighted": weighted, "primary": m.primary, "secondary": secondary,
                "backend": self.backend, "opts": opts, "mode": mode, "x": x, "holds": list(holds)}

    def assemble(self, ncols: int, xs: list[np.ndarray]) -> np.ndarray:
        x = np.zeros(ncols)
        for m, xt in zip(self.models, xs):
            x[m.cols] = xt
        return x


def solve_by_slot(sc, md, lm, v, obj, backend, opts: SolveOptions, build_secs: float):
    """Solve slot by slot; returns a Plan, or None when the whole model must be solved instead."""
    t_start = time.perf_counter()
    deadline = None if opts.time_limit is None else t_start + opts.time_limit
    tie = sc.options.tie_break.value
    sec_name = SECONDARY[obj] if tie != "none" else None
    coupling = [(fam, expr, float(getattr(sc.options, opt))) for fam, expr, opt in COUPLING
                if getattr(sc.options, opt) is not None]
    runner = SlotRunner(sc, md, v, obj, backend, opts)
    build_secs += time.perf_counter() - t_start
    T = runner.T

    def progress_cb(stage):
        if opts.progress is None:
            return None
        return lambda done, el: opts.progress({"incumbent": None, "bound": None, "gap": None, "elapsed": el,
                                               "slots_done": done, "slots": T, "stage": stage})

    sec_vec = (lambda m: m.lm.expressions[OBJECTIVE_EXPRESSION[sec_name]]) if sec_name else (lambda m: None)
    with runner:
        # ---- round 0: the coupling-free optimum (with the tie-break right away when nothing couples)
        sub = SolveOptions(None, opts.mip_gap, 1, opts.seed)
        tasks = [runner.task(m, m.primary, sub, None if coupling else sec_vec(m), tie) for m in runner.models]
        round0 = None if deadline is None else t_start + opts.time_limit * (1.0 if not coupling else 0.6)
        res = runner.run(tasks, progress_cb("slots"), round_deadline=round0)
        def first_failure(r):  # report the slot that failed, not the ones cancelled because of it
            return 0 if r["status"] in (INFEASIBLE, UNBOUNDED) else 2 if r["message"] == "cancelled" else 1

        for r in sorted(res, key=first_failure):
            raise_for(SolveResult(r["status"], r["objective"], r["bound"], None, 0.0, r["x"], r["message"]), sc,
                       opts, where=f" for slot {r['t']}")
        bounds = [r["bound"] for r in res]
        lower = sum(bounds) if all(b is not None for b in bounds) else None
        x = runner.assemble(lm.ncols, [r["x"] for r in res])
        info_extra = {}
        if coupling:
            out = _lagrangian(runner, sc, lm, res, coupling, opts, deadline, lower, progress_cb)
            if out is None:
                return None
            x, lower, info_extra = out
            xs = [x[m.cols] for m in runner.models]
            if sec_name is not None:
                # each slot keeps its share of every coupling amount (the tie-break holds the primary itself)
                holds = [[(m.lm.expressions[expr], float(m.lm.expressions[expr] @ xt)) for _, expr, _ in coupling]
                         for m, xt in zip(runner.models, xs)]
                sub = SolveOptions(None, opts.mip_gap, 1, opts.seed)
                tasks = [runner.task(m, m.primary, sub, sec_vec(m), tie, x=xt, holds=h)
                         for m, xt, h in zip(runner.models, xs, holds)]
                res2 = runner.run(tasks, progress_cb("tie-break"), round_deadline=deadline)
                # a slot whose tie-break did not run (cancelled) keeps its plan before the tie-break
                res2 = [q if q["x"] is not None else dict(q, x=xt, tie="skipped") for q, xt in zip(res2, xs)]
                x = runner.assemble(lm.ncols, [r["x"] for r in res2])
                res = [dict(r, tie=q["tie"]) for r, q in zip(res, res2)]
    primary = objective_vector(lm, md, obj)
    total = float(primary @ x)
    gap = None if lower is None else (0.0 if abs(total - lower) <= 1e-12 * max(1.0, abs(total))
                                      else max(0.0, total - lower) / max(abs(total), 1e-9))
    ok = gap is not None and gap <= opts.mip_gap + 1e-12
    if not coupling:
        ok = ok or all(r["status"] == OPTIMAL for r in res)
    ties = sorted({r["tie"] for r in res})
    tie_label = ties[0] if len(ties) == 1 else "; ".join(ties)
    msgs = sorted({r["message"] for r in res if r["message"]})
    status_msg = ", ".join(msgs) if not coupling else info_extra.get("message", "")
    info = dict(
        backend=backend, status=status_msg, gap=gap, bound=lower, mip_gap=opts.mip_gap,
        time_limit=opts.time_limit, threads=opts.threads, seed=opts.seed, tie_break=tie_label,
        variables=lm.ncols, constraints=lm.nrows, integer_variables=int(lm.integrality.sum()),
        build_seconds=build_secs + runner.build_seconds, solve_seconds=time.perf_counter() - t_start,
        slots_solved_separately=True,
    )
    return make_plan(sc, md, lm, v, obj, x, "optimal" if ok else "feasible", info, sec_name if ties == [tie] and sec_name else None)


def _knapsack(menu, coupling, T):
    """Pick one menu entry per slot: min sum f subject to sum g_j <= b_j. Returns (choice, F) or None."""
    import highspy

    idx = [(t, i) for t in range(T) for i in range(len(menu[t]))]
    n = len(idx)

    h = new_highs()
    h.setOptionValue("mip_rel_gap", 1e-9)
    f = np.array([menu[t][i]["f"] for t, i in idx])
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.array([highspy.HighsVarType.kInteger] * n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), f)
    pos = 0
    for t in range(T):
        k = len(menu[t])
        h.addRow(1.0, 1.0, k, np.arange(pos, pos + k, dtype=np.int32), np.ones(k))
        pos += k
    for j, (_, _, b) in enumerate(coupling):
        g = np.array([menu[t][i]["g"][j] for t, i in idx])
        h.addRow(-highspy.kHighsInf, b, n, np.arange(n, dtype=np.int32), g)
    run_highs(h)
    if h.getInfo().primal_solution_status != 2:
        return None
    z = np.asarray(h.getSolution().col_value)
    choice = [0] * T
    for (t, i), zz in zip(idx, z):
        if zz > 0.5:
            choice[t] = i
    F = sum(menu[t][choice[t]]["f"] for t in range(T))
    return choice, F


def _lagrangian(runner: SlotRunner, sc, lm, res0, coupling, opts, deadline, lower0, progress_cb):
    """Steps 1-4 of the module docstring. Returns (x, lower bound, info) or None (solve the whole model)."""
    T = runner.T
    models = runner.models
    G = [[m.lm.expressions[expr] for _, expr, _ in coupling] for m in models]
    menu: list[list[dict]] = [[] for _ in range(T)]

    def add(results):
        for m, r, g in zip(models, results, G):
            if r["x"] is None:
                continue
            xt = r["x"]
            menu[m.t].append({"x": xt, "f": float(m.primary @ xt), "g": [float(gj @ xt) for gj in g]})

    add(res0)
    lower = lower0 if lower0 is not None else -math.inf
    F0 = sum(menu[t][0]["f"] for t in range(T))
    G0 = [sum(menu[t][0]["g"][j] for t in range(T)) for j in range(len(coupling))]
    b = [c[2] for c in coupling]
    lam = [0.0] * len(coupling)
    lo = [0.0] * len(coupling)
    hi: list[float | None] = [None] * len(coupling)
    for j in range(len(coupling)):
        if G0[j] > b[j]:
            lam[j] = 0.5 * max(abs(F0), 1e-9) / max(abs(G0[j]), 1e-9)
    best = _knapsack(menu, coupling, T)
    rounds = 0
    stale = 0
    while rounds < MAX_ROUNDS:
        if best is not None and best[1] - lower <= opts.mip_gap * max(abs(best[1]), 1e-9):
            break
        if stale >= 2:  # neither the plan nor the bound improved twice in a row: leave it to refinement
            break
        if deadline is not None and deadline - time.perf_counter() < 1.0:
            break
        if runner.cancel.is_set():
            break
        if all(lj == 0 for lj in lam):
            break
        rounds += 1
        share = 1.0 / max(1, (MAX_ROUNDS - rounds + 2))
        lim = None if deadline is None else max(0.5, (deadline - time.perf_counter()) * share * runner.workers / T)
        sub = SolveOptions(lim, opts.mip_gap, 1, opts.seed)
        tasks = [runner.task(m, m.primary + sum(lj * gj for lj, gj in zip(lam, g)), sub) for m, g in zip(models, G)]
        res = runner.run(tasks, progress_cb(f"pricing round {rounds}"))
        add(res)
        prev = (best[1] if best is not None else math.inf, lower)
        bnds = [r["bound"] for r in res]
        if all(bd is not None for bd in bnds):
            lower = max(lower, sum(bnds) - sum(lj * bj for lj, bj in zip(lam, b)))
        Gs = [sum(float(gj @ r["x"]) for r, g in zip(res, G) for gj in [g[j]] if r["x"] is not None)
              for j in range(len(coupling))]
        for j in range(len(coupling)):
            if lam[j] == 0 and Gs[j] <= b[j]:
                continue
            if Gs[j] > b[j]:
                lo[j] = lam[j]
                lam[j] = lam[j] * 4 if hi[j] is None else math.sqrt(max(lo[j], 1e-300) * hi[j])
            else:
                hi[j] = lam[j]
                lam[j] = math.sqrt(lo[j] * hi[j]) if lo[j] > 0 else lam[j] / 4
        best = _knapsack(menu, coupling, T)
        tol = 1e-9 * max(1.0, abs(prev[0]) if math.isfinite(prev[0]) else 1.0)
        improved = (best is not None and best[1] < prev[0] - tol) or lower > prev[1] + tol
        stale = 0 if improved else stale + 1
    info = {"message": f"Lagrangian decomposition over {T} slots: {rounds} pricing round(s), "
                       f"multipliers {', '.join(f'{c[0]}={lj:.4g}' for c, lj in zip(coupling, lam))}"}
    if best is None:
        return None  # no combination satisfies the coupling: solve the whole model (or explain)
    choice, F = best
    x = runner.assemble(lm.ncols, [menu[t][choice[t]]["x"] for t in range(T)])
    if F - lower > opts.mip_gap * max(abs(F), 1e-9):
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is None or remaining > 2.0:
            x, lower, msg = _refine_whole(runner, sc, lm, x, lower, opts, remaining)
            info["message"] += msg
    return x, (lower if math.isfinite(lower) else None), info


def _refine_whole(runner, sc, lm, x, lower, opts, remaining):
    """Solve the whole model from the decomposition's plan (a warm start where the backend takes one);
    keep the better plan and bound."""
    primary = objective_vector(lm, runner.md, runner.obj)
    F = float(primary @ x)

    limit = remaining if remaining is not None else DEFAULT_COUPLED_TIME_LIMIT
    be = get_backend(runner.backend)(lm, primary)
    r = be.solve(SolveOptions(limit, opts.mip_gap, opts.threads, opts.seed), start=x)
    msg = f"; whole-model refinement ({limit:.0f} s): {r.message}"
    if r.bound is not None:
        lower = max(lower, r.bound)
    if r.has_solution and float(primary @ r.x) < F - 1e-9 * max(1.0, abs(F)):
        x = r.x
    return x, lower, msg
