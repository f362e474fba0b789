"""Slot by slot inside the coupled model: a proven bound and a starting plan for the rolling horizon.

The rolling horizon (:mod:`planner.optimize.rolling`) needs, for every slot, a lower bound of what that
slot costs and a plan of it to start its windows from. Each slot of the coupled model with its coupling
left out (no ``scale_out``, ``scale_in`` or ``vm_starts`` columns; no ``replica_flow``, ``scale_change``,
``min_up_time``, ``scale_down_delay`` or ``vm_flow`` rows) is a model of its own, and coupling only adds
rows and startup costs (all >= 0), so the sum of the slots' bounds is a lower bound of the coupled
optimum. Solving each slot MILP to its gap is what made this slow (1.5 to 15 s a slot on the week
example, nearly all of it HiGHS's root cuts and heuristics over five to ten clocks per deployment). Per
slot instead:

1. **Bound.** ``ROOT_ROUNDS`` rounds of root cuts of the slot MILP (``SolveOptions.root_rounds``: a
   count, so the same bound on every run), then stop. The first rounds close most of what the root
   closes at all.
2. **Bases to plan on.** A deployment base is what only a GPU clock or latency pool tells apart (region,
   model, GPU type, TP, PP, market). For a chain's first slot (:func:`solve_slots`), the bases of the
   *base relaxation*'s plan: replicas per config continuous, replicas per base whole::

       base_replicas[r,b,t] = sum_{c in b} replicas[r,c,t],   base_replicas integer

   (a relaxation too: its bound also counts). For the next slots of a chain, the bases the previous
   slot's plan runs plus those of the slot's own LP relaxation: hour to hour, the fleet changes little.
3. **Plan.** The slot MILP with replicas only on those bases (at any of their clocks and pools; every
   other replica column fixed at 0): a MILP over a dozen or two bases. When it has none, the whole slot
   MILP (its bound then tightens the slot's).

Measured on the week example, 2 threads, no time limit (README, "The week"): the slots take about
60 s in all where the whole slot MILPs solved to a 0.5 % gap took 407 s; the plans are as good (3,141.9
kg with the coupled model's startup costs, against 3,141.6 kg) and the bound 0.22 % lower (3,115.2
against 3,122.0 kg).

Slots run in chains of ``CHAIN`` consecutive slots, ``threads`` chains at a time, in worker threads
(HiGHS releases the GIL while it solves; the Pyomo backend, not thread-safe, runs one at a time).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from formulations import LinearModel
from planner.optimize.backends import SolveOptions, get_backend
from planner.optimize.backends.base import INFEASIBLE, NO_SOLUTION, UNBOUNDED, SolveResult

COUPLING_COLUMNS = ("scale_out", "scale_in", "vm_starts")
"""Variable blocks that only exist to couple slots."""
COUPLING_ROWS = ("replica_flow", "scale_change", "min_up_time", "scale_down_delay", "vm_flow", "budget", "carbon_cap")
"""Constraint blocks that couple slots (or the whole horizon)."""
BOUND_SHARE = 0.2
"""Share of a slot's time limit its bound may take."""
RELAX_SHARE = 0.6
"""Share of the rest the base relaxation may take (the plan gets the rest)."""
ROOT_ROUNDS = 6
"""Rounds of root cuts of the slot MILP for its bound (see the module docstring)."""
CHAIN = 12
"""Consecutive slots per chain (see :func:`solve_slots`)."""
REFINE_GAP = 1e-3
"""Gap to which :func:`refine_bounds` solves a slot (a bound as close as the time left allows)."""
RESCUE_GAP = 0.25
"""A slot that ran out of time without a plan is solved again without a limit to this gap."""
SLACK = 3.0
"""With a time limit, a slot may take up to this many times its share of the time left."""
HEAD_WEIGHT = 3.0
"""A chain's first slot's share of the time limit, in slots (it solves the base relaxation in full)."""


@dataclass
class SlotOutcome:
    t: int
    status: str
    x: np.ndarray | None  # the slot's columns (in the slot model's order)
    bound: float | None
    message: str = ""
    whole: bool = False  # the repair needed the whole slot MILP
    seconds: float = 0.0


def slot_index(lm: LinearModel, blocks, size: int) -> np.ndarray:
    """Slot of every column (or row): from each block's ``slot`` dimension; -1 where a block has none."""
    out = np.full(size, -1, np.int64)
    for b in blocks:
        if "slot" in b.dims:
            out[b.start:b.start + b.size] = b.index[:, b.dims.index("slot")]
    return out


def submodel(lm: LinearModel, cols: np.ndarray, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             relax: tuple[str, ...] = ()) -> LinearModel:
    """The model restricted to ``cols`` (bool mask, in column order) and ``rows`` (bool mask): the same
    blocks and labels, columns renumbered, bounds from ``lower``/``upper``; the variable blocks named in
    ``relax`` continuous. Every nonzero of a kept row must be on a kept column."""
    sub = LinearModel(labels=lm.labels)
    new = np.full(lm.ncols, -1, np.int64)
    new[np.nonzero(cols)[0]] = np.arange(int(cols.sum()))  # blocks keep their order: ranks are the new numbers
    for b in lm.var_blocks:
        sel = cols[b.start:b.start + b.size]
        if not sel.any():
            continue
        sub.add_vars(b.name, b.dims, b.index[sel], lower[b.start:b.start + b.size][sel],
                     upper[b.start:b.start + b.size][sel], integer=b.integer and b.name not in relax, doc=b.doc)
    for b in lm.con_blocks:
        keep = rows[b.start:b.start + b.size]
        if not keep.any():
            continue
        local = np.full(b.size, -1, np.int64)
        local[keep] = np.arange(int(keep.sum()))
        nz = keep[b.rows]
        c = new[b.cols[nz]]
        assert (c >= 0).all(), f"{b.name}: a kept row uses a column outside the submodel"
        sub.add_constraints(b.name, b.dims, b.index[keep], local[b.rows[nz]], c, b.vals[nz], b.lower[keep],
                            b.upper[keep], doc=b.doc)
    idx = np.nonzero(cols)[0]
    for name, vec in lm.expressions.items():
        sub.expressions[name] = vec[idx]
    return sub


def worker_count(n: int, threads: int | None, backend: str) -> int:
    """Worker threads for ``n`` independent solves: ``threads`` (default: the CPUs), at most ``n``; one
    for the Pyomo backend, which is not thread-safe."""
    if backend == "pyomo":
        return 1
    return max(1, min(n, threads or (os.cpu_count() or 1)))


def blocks_mask(blocks, names, size: int) -> np.ndarray:
    """Mask of the columns (or rows) of the blocks named in ``names``."""
    m = np.zeros(size, bool)
    for b in blocks:
        if b.name in names:
            m[b.start:b.start + b.size] = True
    return m


def with_base_replicas(sub: LinearModel, md) -> LinearModel:
    """Step 1's model: ``sub`` (replicas already continuous) plus ``base_replicas`` (integer) and the rows
    ``base_link``: ``sum_{c in b} replicas[r,c,t] - base_replicas[r,b,t] = 0``."""
    rb = sub.block("replicas")
    base_of = md.configs.set_index("c")["b"]
    r, c, t = rb.index[:, 0], rb.index[:, 1], rb.index[:, 2]
    b = base_of.loc[c].to_numpy(np.int64)
    keys, inv = np.unique(np.stack([r, b, t], axis=1), axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    ub = np.zeros(len(keys))
    np.add.at(ub, inv, rb.upper)
    blk = sub.add_vars("base_replicas", ("region", "base", "slot"), keys, 0.0, ub, integer=True,
                       doc="replicas of deployment base b in region r, slot t (whole; per config continuous)")
    rows = np.concatenate([inv, np.arange(len(keys))])
    cols = np.concatenate([rb.cols, blk.cols])
    vals = np.concatenate([np.ones(rb.size), -np.ones(len(keys))])
    sub.add_constraints("base_link", ("region", "base", "slot"), keys, rows, cols, vals, 0.0, 0.0,
                        doc="replicas of a base = the sum of its configs' replicas")
    return sub


class SlotModels:
    """The coupled model's slots without their coupling, as submodels, and the map back to its columns."""

    def __init__(self, lm: LinearModel, md, primary: np.ndarray):
        self.lm, self.md, self.primary = lm, md, primary
        # every column's and row's slot (-1: none), and the same with the coupling blocks at -1
        self.all_col_slot = slot_index(lm, lm.var_blocks, lm.ncols)
        self.all_row_slot = slot_index(lm, lm.con_blocks, lm.nrows)
        self.coupling_cols = blocks_mask(lm.var_blocks, COUPLING_COLUMNS, lm.ncols)
        coupling_rows = blocks_mask(lm.con_blocks, COUPLING_ROWS, lm.nrows)
        self.col_slot = np.where(self.coupling_cols, -1, self.all_col_slot)
        self.row_slot = np.where(coupling_rows, -1, self.all_row_slot)
        order = np.argsort(self.col_slot, kind="stable")
        self._col_order = order
        self._col_starts = np.searchsorted(self.col_slot[order], np.arange(md.scenario.n_slots + 1))
        rb = lm.block("replicas")
        self._rb = rb
        base_of = md.configs.set_index("c")["b"]
        # (region, base) of every replica column, as one code
        self._rbase = rb.index[:, 0] * (len(md.configs) + 1) + base_of.loc[rb.index[:, 1]].to_numpy(np.int64)

    def columns(self, t: int) -> np.ndarray:
        """Columns of the coupled model in slot t's model, in order."""
        return np.sort(self._col_order[self._col_starts[t]:self._col_starts[t + 1]])

    def model(self, t: int, relaxed: bool = False, lp: bool = False,
              bases: set | None = None) -> tuple[LinearModel, np.ndarray]:
        """Slot t's model and its columns in the coupled model: ``relaxed``, step 1's; ``lp``, its linear
        relaxation; ``bases`` (region-base codes, see :meth:`bases`), replicas only on those (every other
        replica column fixed at 0)."""
        cols = np.zeros(self.lm.ncols, bool)
        cols[self.columns(t)] = True
        rows = self.row_slot == t
        lo, up = self.lm.lower, self.lm.upper
        if bases is not None:
            rb = self._rb
            off = np.zeros(self.lm.ncols, bool)
            off[rb.start:rb.start + rb.size] = ~np.isin(self._rbase, np.fromiter(bases, np.int64, len(bases)))
            up = np.where(off, 0.0, up)
            lo = np.minimum(lo, up)
        relax = tuple(b.name for b in self.lm.var_blocks) if lp else ("replicas",) if relaxed else ()
        sub = submodel(self.lm, cols, rows, lo, up, relax=relax)
        if relaxed and not lp:
            sub = with_base_replicas(sub, self.md)
        return sub, np.nonzero(cols)[0]

    def bases(self, cols: np.ndarray, x: np.ndarray) -> set:
        """The (region, base) codes on which ``x`` (values of the coupled model's columns ``cols``, e.g. a
        slot model's solution) runs replicas."""
        rb = self._rb
        sel = (cols >= rb.start) & (cols < rb.start + rb.size) & (x[:len(cols)] > 1e-6)
        return set(self._rbase[cols[sel] - rb.start].tolist())

    def objective(self, cols: np.ndarray, sub: LinearModel) -> np.ndarray:
        """The primary objective over a slot model's columns (0 on columns the coupled model lacks)."""
        return np.concatenate([self.primary[cols], np.zeros(sub.ncols - len(cols))])


def cancelled(opts: SolveOptions) -> bool:
    return opts.cancel is not None and opts.cancel.is_set()


def _solve_slot(sm: SlotModels, t: int, backend: str, opts: SolveOptions, near: set | None) -> SlotOutcome:
    """Slot t: the bound, the bases to plan on, the plan. ``opts.time_limit``: the slot's. ``near``: the
    bases the previous slot's plan runs, or None (a chain's first slot: see :func:`solve_slots`)."""
    t0 = time.perf_counter()
    limit = opts.time_limit

    def left(share=1.0):
        return None if limit is None else max(0.2, share * (limit - (time.perf_counter() - t0)))

    def run(sub, cols, o):
        return get_backend(backend)(sub, sm.objective(cols, sub)).solve(replace(o, progress=None))

    def failed(r):
        return SlotOutcome(t, r.status, None, None, r.message, seconds=time.perf_counter() - t0)

    whole, wcols = sm.model(t)
    r0 = run(whole, wcols, replace(opts, time_limit=left(BOUND_SHARE), root_rounds=ROOT_ROUNDS))
    if r0.status in (INFEASIBLE, UNBOUNDED):
        return failed(r0)
    bound = r0.bound
    if near is None:  # the bases of the base relaxation's plan
        rel, rcols = sm.model(t, relaxed=True)
        r1 = run(rel, rcols, replace(opts, time_limit=left(RELAX_SHARE)))
        if r1.status in (INFEASIBLE, UNBOUNDED):
            return failed(r1)
        if r1.bound is not None:
            bound = r1.bound if bound is None else max(bound, r1.bound)
        bases = sm.bases(rcols, r1.x) if r1.has_solution else set()
    else:  # the bases the previous slot runs and those of this slot's LP relaxation
        lp, lcols = sm.model(t, lp=True)
        r1 = run(lp, lcols, replace(opts, time_limit=left()))
        bases = near | (sm.bases(lcols, r1.x) if r1.has_solution else set())
    x = None
    if bases:
        sub, cols = sm.model(t, bases=bases)
        r2 = run(sub, cols, replace(opts, time_limit=left()))
        if r2.has_solution:
            x = r2.x
    fallback = x is None
    if fallback:  # those bases make no plan (or nothing was found in time): the whole slot MILP
        r3 = run(whole, wcols, replace(opts, time_limit=left()))
        if r3.status in (INFEASIBLE, UNBOUNDED):
            return failed(r3)
        if r3.bound is not None:
            bound = r3.bound if bound is None else max(bound, r3.bound)
        if not r3.has_solution and limit is not None and r3.status == NO_SOLUTION and not cancelled(opts):
            # out of time without any plan of the slot: take the first reasonable one rather than none
            r3 = run(whole, wcols, replace(opts, time_limit=None, mip_gap=RESCUE_GAP))
        if not r3.has_solution:
            return SlotOutcome(t, NO_SOLUTION, None, bound, r3.message, True, time.perf_counter() - t0)
        x = r3.x
    return SlotOutcome(t, "ok", x, bound, "", fallback, time.perf_counter() - t0)


def solve_slots(sm: SlotModels, backend: str, opts: SolveOptions, deadline: float | None = None,
                progress=None) -> list[SlotOutcome]:
    """Every slot (module docstring), in chains of ``CHAIN`` consecutive slots, ``opts.threads`` chains at
    a time; each slot MILP on one thread. The chains are fixed by the slots alone, so the plans do not
    depend on the number of threads.

    With ``deadline`` (a ``perf_counter`` instant), each slot's time limit is set as it starts: its share
    of the time left among the slots not started yet (times the workers; a chain's first slot weighs
    ``HEAD_WEIGHT``). The first infeasible slot cancels
    the others."""
    T = sm.md.scenario.n_slots
    chains = [list(range(a, min(T, a + CHAIN))) for a in range(0, T, CHAIN)]
    workers = worker_count(len(chains), opts.threads, backend)
    cancel = threading.Event()
    lock = threading.Lock()
    heads = {ts[0] for ts in chains}
    weight = {t: HEAD_WEIGHT if t in heads else 1.0 for t in range(T)}
    left = [sum(weight.values())]
    done: list[SlotOutcome] = []
    t0 = time.perf_counter()
    sub = SolveOptions(None, opts.mip_gap, 1, opts.seed, None, cancel=cancel)

    def slot(t: int, near: set | None) -> SlotOutcome:
        if cancel.is_set():
            return SlotOutcome(t, "cancelled", None, None, "cancelled")
        o = sub
        with lock:
            w = left[0]
            left[0] -= weight[t]
        if deadline is not None:  # this slot's share of the time left, by weight (a chain's first counts more),
            # times SLACK: a hard slot may take what easy ones left; the last ones share what remains
            rem = deadline - time.perf_counter()
            share = weight[t] * workers / max(w, weight[t] * workers)
            o = replace(sub, time_limit=max(0.5, min(rem, SLACK * share * rem)))
        out = _solve_slot(sm, t, backend, o, near)
        if out.status in (INFEASIBLE, UNBOUNDED):
            cancel.set()
        with lock:
            done.append(out)
            if progress is not None:
                progress(len(done), time.perf_counter() - t0)
        return out

    def chain(ts: list[int]) -> None:
        near = None
        for t in ts:
            out = slot(t, near)
            if out.x is None:
                near = None
                continue
            near = sm.bases(sm.columns(t), out.x)

    if workers == 1:
        for ts in chains:
            chain(ts)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetplan-slot") as pool:
            futs = [pool.submit(chain, ts) for ts in chains]
            try:
                for f in futs:
                    f.result()
            except BaseException:
                cancel.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return sorted(done, key=lambda r: r.t)


def result_of(out: SlotOutcome) -> SolveResult:
    """A slot's outcome as a SolveResult (for ``whole.raise_for``)."""
    status = out.status if out.status in (INFEASIBLE, UNBOUNDED, NO_SOLUTION) else "error"
    return SolveResult(status, None, out.bound, None, out.seconds, None, out.message)


def refine_bounds(sm: SlotModels, outs: list[SlotOutcome], x: np.ndarray, backend: str, opts: SolveOptions,
                  deadline: float) -> int:
    """With time left before ``deadline``: the slot MILPs solved in full (to ``REFINE_GAP``, each from its
    part of ``x``, a plan of the coupled model), the slots whose plan is furthest above their bound
    first, ``opts.threads`` at a time; each raises its slot's bound in ``outs`` to the one proven. Returns
    the number of slots refined."""
    workers = worker_count(len(outs), opts.threads, backend)
    order = sorted(outs, key=lambda o: -(float(sm.primary[sm.columns(o.t)] @ x[sm.columns(o.t)]) - (o.bound or 0.0)))
    lock = threading.Lock()
    left = [len(order)]
    refined = [0]

    def one(o: SlotOutcome) -> None:
        with lock:
            n = left[0]
            left[0] -= 1
        rem = deadline - time.perf_counter()
        if rem < 1.0:
            return
        sub, cols = sm.model(o.t)
        lim = max(0.5, min(rem, SLACK * rem * min(workers, n) / max(n, 1)))
        r = get_backend(backend)(sub, sm.objective(cols, sub)).solve(
            SolveOptions(lim, min(opts.mip_gap, REFINE_GAP), 1, opts.seed), start=x[cols])
        if r.bound is not None and (o.bound is None or r.bound > o.bound):
            with lock:
                o.bound = r.bound
                refined[0] += 1

    if workers == 1:
        for o in order:
            one(o)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetplan-bound") as pool:
            for f in [pool.submit(one, o) for o in order]:
                f.result()
    return refined[0]
