"""Solving: build the model, run the backend (lexicographic tie-break), turn the solution into a Plan."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from formulations import (
    OBJECTIVE_EXPRESSION,
    SECONDARY,
    LinearModel,
    ModelData,
    Vars,
    build,
    build_sets,
    objective_vector,
    repair_replicas,
)

from .backends import (
    INFEASIBLE,
    NO_SOLUTION,
    OPTIMAL,
    UNBOUNDED,
    Backend,
    SolveOptions,
    SolveResult,
    get_backend,
)
from .errors import InfeasibleError, InputError, NoSolutionError, SolverError
from .loading import Scenario
from .plan import (
    ClassLoad,
    Deployment,
    ObjectiveValue,
    Plan,
    PlanOptions,
    PruningInfo,
    Route,
    ScenarioRef,
    Slot,
    SlotTotals,
    SolverInfo,
    Target,
    Totals,
    UnservedRate,
)

DEFAULT_COUPLED_TIME_LIMIT = 120.0
"""Seconds the whole-model MILP of a solve with a budget or carbon cap may take when no time limit
is given (the Lagrangian's whole-model refinement, or the whole-model solve itself); it then ends
with the best plan found and its proven gap. The slot rounds keep no limit, so their results do not
depend on the machine's speed."""

UNITS = {"carbon": "kgCO2e", "energy": "kWh", "cost": "USD", "gpu-hours": "GPU-h"}
EPS = 1e-7  # solver values below this are noise (HiGHS's feasibility tolerance)


@dataclass
class BuiltModel:
    """A model ready to solve: the sets, the neutral LinearModel and the backend's native model.

    ``native`` is the solver library's object; add constraints to it, then call :meth:`solve`.
    """

    scenario: Scenario
    data: ModelData
    lm: LinearModel
    vars: Vars
    backend: Backend
    objective: str
    build_seconds: float

    @property
    def native(self):
        return self.backend.native

    def write(self, path: str | Path) -> None:
        """Write the exact model given to HiGHS; format by suffix (.mps or .lp)."""
        self.backend.write_model(str(path))

    def solve(self, time_limit: float | None = None, mip_gap: float = 5e-3, threads: int | None = None,
              seed: int | None = None, progress: Callable[[dict], None] | None = None) -> Plan:
        return _solve_built(self, SolveOptions(time_limit, mip_gap, threads, seed, progress))


def estimate_nonzeros(sc: Scenario) -> int:
    """An upper estimate of the MILP's coefficients, from the scenario's sizes alone (before any set
    is built): every (profile row, class) pair in every region offering its GPU and every slot gives an
    assignment column with about 4 coefficients; every (class, origin, region, slot) a routing column
    with about 3."""
    prof = sc.profiles
    cls = pd.DataFrame({"model": [k.model for k in sc.spec.classes], "shape": [k.shape for k in sc.spec.classes]})
    per_gpu = prof.merge(cls, on=["model", "shape"]).groupby("gpu").size()
    offered = {g: int((~np.isnan(sc.gpu_price[:, i])).sum()) for i, g in enumerate(sc.gpus)}
    y = sum(int(n) * offered.get(g, 0) for g, n in per_gpu.items()) * sc.n_slots
    x = len(sc.classes) * len(sc.origins) * len(sc.regions) * sc.n_slots
    return 4 * y + 3 * x


def check_model_size(sc: Scenario) -> None:
    """Refuse (InputError) a model above PLANNER_MAX_MODEL_NONZEROS before building it."""
    from .limits import limits

    lim = limits().max_model_nonzeros
    est = estimate_nonzeros(sc)
    if est > lim:
        raise InputError(f"the model would have about {est:,} coefficients, above the limit of {lim:,} "
                         "(PLANNER_MAX_MODEL_NONZEROS): fewer slots, regions, profile rows or classes, or raise the limit")


def _tiny_demand(sc: Scenario) -> tuple[Scenario, list[str]]:
    """Demand below the planner's resolution (RATE_RESOLUTION req/s) is left out of the model and named.

    HiGHS meets rows to about 1e-7, so such a rate would be "served" by nothing while the plan said
    otherwise; the checker's tolerance (1e-6 req/s) accepts the difference, and the plan says so."""
    from .scenario import RATE_RESOLUTION

    from .loading import _replace

    tiny = (sc.demand > 0) & (sc.demand < RATE_RESOLUTION)
    if not tiny.any():
        return sc, []
    K, O, T = np.nonzero(tiny)
    ex = ", ".join(f"{sc.classes[k]} from {sc.origins[o]} in slot {t} ({sc.demand[k, o, t]:.3g} req/s)"
                   for k, o, t in list(zip(K, O, T))[:5])
    more = f" and {len(K) - 5} more" if len(K) > 5 else ""
    d = sc.demand.copy()
    d[tiny] = 0.0
    total = float(sc.demand[tiny].sum() * sc.slot_seconds)
    msg = (f"{len(K)} demand value(s) below {RATE_RESOLUTION:g} req/s are not planned (about {total:.3g} requests in "
           f"all, below the solver's resolution): {ex}{more}")
    return Scenario(**_replace(sc, demand=d)), [msg]


def _prepare(scenario: Scenario, objective: str | None, option_overrides: dict):
    if objective is not None:
        option_overrides["objective"] = objective
    sc = scenario.with_options(**option_overrides)
    t0 = time.perf_counter()
    sc, notes = _tiny_demand(sc)
    check_model_size(sc)
    md = build_sets(sc)
    md.warnings = notes + md.warnings
    if len(md.unroutable) and not sc.options.unserved.allowed:
        from .explain import explain_unroutable

        raise InfeasibleError(explain_unroutable(md))
    lm, v = build(md)
    return sc, md, lm, v, time.perf_counter() - t0


def build_model(scenario: Scenario, objective: str | None = None, backend: str = "highs", names: bool = False,
                **option_overrides: Any) -> BuiltModel:
    """Build the whole (all slots) MILP for ``scenario`` on the chosen backend.

    Keyword arguments override scenario options. The returned model's ``native`` object can be
    extended with your own constraints before :meth:`BuiltModel.solve`, which solves it as one model.
    Raises :class:`~planner.errors.InfeasibleError` when some demand cannot be routed at all.
    """
    sc, md, lm, v, secs = _prepare(scenario, objective, option_overrides)
    obj = sc.options.objective.value
    be = get_backend(backend)(lm, objective_vector(lm, md, obj), names=names)
    return BuiltModel(sc, md, lm, v, be, obj, secs)


def solve(scenario: Scenario, objective: str | None = None, backend: str = "highs", *,
          time_limit: float | None = None, mip_gap: float = 5e-3, threads: int | None = None,
          seed: int | None = None, write_model: str | Path | None = None,
          progress: Callable[[dict], None] | None = None, decompose: bool = True, **option_overrides: Any) -> Plan:
    """Solve ``scenario`` and return a :class:`~planner.plan.Plan`.

    ``objective``: carbon | energy | cost | gpu-hours; ``backend``: highs | pyomo | pulp; other
    keyword arguments override scenario options (``budget_usd``, ``carbon_cap_kg``, ``tie_break``,
    ``max_utilization``).

    Without a budget or carbon cap nothing couples the slots, so each slot is solved on its own
    (exactly the same optimum, much faster), ``threads`` slots at a time. With a budget or cap,
    the slot-by-slot optimum is used when it satisfies them (it is then optimal for the whole
    model); otherwise the whole model is solved at once. ``decompose=False`` always solves the
    whole model.

    Raises InfeasibleError (with an explanation), NoSolutionError (time limit without a feasible
    plan) or SolverError.
    """
    import math

    if mip_gap is None:
        mip_gap = 5e-3
    if not (isinstance(mip_gap, (int, float)) and 0 <= mip_gap < 1):
        raise InputError(f"mip_gap must be in [0, 1), got {mip_gap}")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit)
                                       and time_limit > 0):
        raise InputError(f"time_limit must be a positive finite number of seconds, got {time_limit}")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise InputError(f"threads must be a whole number >= 1, got {threads}")
    sc, md, lm, v, secs = _prepare(scenario, objective, option_overrides)
    obj = sc.options.objective.value
    coupled = sc.options.budget_usd is not None or sc.options.carbon_cap_kg is not None
    if coupled:
        from .explain import refuse_impossible_limits

        t0 = time.perf_counter()
        refuse_impossible_limits(sc, md, threads)
        secs += time.perf_counter() - t0
    opts = SolveOptions(time_limit, mip_gap, threads, seed, progress)
    be = None  # the whole model's native form, built once (for writing and/or the whole-model solve)
    if write_model is not None:
        from .io import atomic_path

        be = get_backend(backend)(lm, objective_vector(lm, md, obj), names=True)
        t0 = time.perf_counter()
        with atomic_path(write_model) as tmp:
            be.write_model(tmp)
        secs += time.perf_counter() - t0
    if decompose and sc.n_slots > 1:
        from .decompose import solve_by_slot

        plan = solve_by_slot(sc, md, lm, v, obj, backend, opts, secs + (be.build_seconds if be else 0.0))
        if plan is not None:
            return plan
    if be is None:
        be = get_backend(backend)(lm, objective_vector(lm, md, obj))
    if coupled and time_limit is None:
        opts = replace(opts, time_limit=DEFAULT_COUPLED_TIME_LIMIT)  # the whole-model MILP: bounded
    return _solve_built(BuiltModel(sc, md, lm, v, be, obj, secs), opts)


def _solve_built(b: BuiltModel, opts: SolveOptions) -> Plan:
    sc, lm, be = b.scenario, b.lm, b.backend
    t_start = time.perf_counter()
    o1 = SolveOptions(opts.time_limit, opts.mip_gap, opts.threads, opts.seed, opts.progress)
    r1 = be.solve(o1)
    _raise_for(r1, sc, opts)
    x = r1.x
    tie = sc.options.tie_break.value
    sec = SECONDARY[b.objective] if tie != "none" else None
    solve_seconds = r1.solve_seconds
    if sec is not None:
        remaining = None if opts.time_limit is None else opts.time_limit - (time.perf_counter() - t_start)
        x, tie, ok, s2 = _tie_break(be, lm, objective_vector(lm, b.data, b.objective), lm.expressions[
            OBJECTIVE_EXPRESSION[sec]], x, remaining, opts, tie)
        solve_seconds += s2
        if not ok:
            sec = None
    status = "optimal" if r1.status == OPTIMAL else "feasible"
    info = dict(
        backend=be.name, status=r1.message, gap=r1.gap, bound=r1.bound, mip_gap=opts.mip_gap,
        time_limit=opts.time_limit, threads=opts.threads, seed=opts.seed, tie_break=tie,
        variables=lm.ncols, constraints=lm.nrows, integer_variables=int(lm.integrality.sum()),
        build_seconds=b.build_seconds + be.build_seconds, solve_seconds=solve_seconds, slots_solved_separately=False,
    )
    return make_plan(b, x, status, info, sec)


def _raise_for(r: SolveResult, sc: Scenario, opts: SolveOptions, where: str = "") -> None:
    if r.status in (INFEASIBLE, UNBOUNDED):
        from .explain import explain_infeasible

        raise InfeasibleError(explain_infeasible(sc, opts))
    if r.status == NO_SOLUTION:
        raise NoSolutionError(
            f"no feasible plan found within the time limit ({opts.time_limit} s){where}; best bound "
            f"{r.bound if r.bound is not None else 'unknown'}. Raise --time-limit or --mip-gap."
        )
    if not r.has_solution:
        raise SolverError(f"the solver failed{where}: {r.message}")


def _tie_break(be: Backend, lm: LinearModel, primary: np.ndarray, secondary: np.ndarray, x: np.ndarray,
               remaining: float | None, opts: SolveOptions, mode: str):
    """Minimise ``secondary`` with ``primary`` held at its value in ``x``. Returns (x, label, ok, seconds).

    mode ``routing``: the integer columns (replicas) are fixed to their values in ``x`` first, so the
    second stage is an LP over routing and assignment. mode ``lexicographic``: nothing is fixed.
    """
    if remaining is not None and remaining < 0.05:
        return x, "skipped: time limit reached by the primary solve", False, 0.0
    z1 = float(primary @ x)
    nz = np.nonzero(primary)[0]
    if mode == "routing":
        ints = np.nonzero(lm.integrality)[0]
        be.fix_columns(ints, repair_replicas(lm, x)[ints])
    # held relative to its value; replicas are whole within 1e-8, so fixing them moves it by less
    tol = 1e-9 * abs(z1) + 1e-12
    be.add_row("tie_break_primary_bound", nz, primary[nz], -np.inf, z1 + tol)
    be.set_objective(secondary)
    r2 = be.solve(replace(opts, time_limit=remaining, progress=None), start=x)
    if r2.has_solution and float(primary @ r2.x) <= z1 + 10 * tol:
        return r2.x, mode, True, r2.solve_seconds
    return x, f"skipped: tie-break solve ended {r2.status}", False, r2.solve_seconds


# ----------------------------------------------------------------------------------- extraction


def _clean(lm: LinearModel, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).copy()
    x[np.abs(x) < EPS] = 0.0
    return repair_replicas(lm, np.maximum(x, 0.0), EPS)


def _split_targets(xk: pd.DataFrame, yk: pd.DataFrame) -> dict[int, list[tuple[int, float]]]:
    """Split each origin's routed rate over configs it may use (slack >= rtt), tightest origin first.

    Valid whenever latency_nesting holds (Hall's condition on nested sets): processing origins by
    decreasing RTT, origin i takes its rate from configs usable by it; every config usable by i is
    usable by later origins, so the prefix sums guarantee enough is left.
    """
    out: dict[int, list[tuple[int, float]]] = {}
    cap = {int(c): float(v) for c, v in zip(yk["c"], yk["val"])}
    slack = {int(c): float(s) for c, s in zip(yk["c"], yk["slack_ms"])}
    order_c = sorted(cap, key=lambda c: (slack[c], c))
    for i, row in xk.sort_values(["rtt", "o"], ascending=[False, True]).iterrows():
        need = float(row["val"])
        parts = []
        usable = [c for c in order_c if slack[c] >= row["rtt"] - 1e-9 and cap[c] > 0]
        for c in usable:
            if need <= 1e-12:
                break
            take = min(need, cap[c])
            if take > 0:
                parts.append((c, take))
                cap[c] -= take
                need -= take
        if need > 1e-9 * max(1.0, row["val"]) and usable:
            # numerical residue: put it on the last usable config
            c = usable[-1]
            parts.append((c, need))
        out[int(row["o"])] = parts
    return out


def scenario_source(sc: Scenario) -> str | None:
    """What a plan records of where its scenario came from (see :class:`~planner.plan.ScenarioRef`)."""
    import os

    from .defaults import default_scenario_path

    if sc.document is None:
        return None
    doc = os.path.realpath(sc.document)
    if doc == os.path.realpath(default_scenario_path()):
        return "<default>"
    return doc


def verify_solution(lm: LinearModel, x: np.ndarray, bound: float | None, objective: np.ndarray,
                    rel: float = 1e-6, abs_: float = 1e-6) -> None:
    """Recompute every row and the objective of the (cleaned) solution; raise NumericalError if the
    solver's answer does not hold: a row violated beyond ``max(abs_, rel x magnitude)``, a variable
    outside its bounds, a non-finite value, or an objective below the bound the solver proved."""
    from .errors import NumericalError

    if not np.all(np.isfinite(x)):
        raise NumericalError("numerical failure: the solver returned non-finite values")
    if lm.nrows:
        r, c, vals = lm.triplets()
        act = np.zeros(lm.nrows)
        mag = np.zeros(lm.nrows)
        np.add.at(act, r, vals * x[c])
        np.add.at(mag, r, np.abs(vals * x[c]))
        lo, up = lm.row_lower, lm.row_upper
        scale = np.maximum(np.maximum(mag, 1.0), np.where(np.isfinite(up), np.abs(up), 0.0))
        scale = np.maximum(scale, np.where(np.isfinite(lo), np.abs(lo), 0.0))
        tol = np.maximum(abs_, rel * scale)
        viol = np.maximum(lo - act, act - up)
        bad = np.nonzero(viol > tol)[0]
        if len(bad):
            i = int(bad[np.argmax(viol[bad] / tol[bad])])
            blk, j = lm.row_family(i)
            raise NumericalError(
                f"numerical failure: the solver's plan violates {len(bad)} row(s) when recomputed, e.g. "
                f"{blk.name}[{lm.index_label(blk.dims, blk.index[j])}] by {viol[i]:.3g} (activity {act[i]:.6g}, "
                f"bounds [{lo[i]:.6g}, {up[i]:.6g}]). The inputs are probably badly scaled: look for values many "
                "orders of magnitude apart (tiny max_rps, huge prices or carbon intensities).")
    lb, ub = lm.lower, lm.upper
    out = np.nonzero((x < lb - 1e-6 * np.maximum(1, np.abs(lb))) | (x > ub + 1e-6 * np.maximum(1, np.abs(ub))))[0]
    if len(out):
        raise NumericalError(f"numerical failure: {len(out)} variable(s) outside their bounds in the solver's plan")
    if bound is not None and np.isfinite(bound):
        z = float(objective @ x)
        if z < bound - 1e-6 * max(1.0, abs(bound)):
            raise NumericalError(f"numerical failure: the plan's objective {z:.9g} is below the bound {bound:.9g} the "
                                 "solver proved; the inputs are probably badly scaled")


def make_plan(b: BuiltModel, x_raw: np.ndarray, status: str, info: dict, secondary: str | None) -> Plan:
    sc, md, lm, v = b.scenario, b.data, b.lm, b.vars
    x = _clean(lm, x_raw)
    primary = objective_vector(lm, md, b.objective)
    verify_solution(lm, x, info.get("bound"), primary)
    cfg = md.configs.set_index("c")
    pairs = md.pairs.set_index(["c", "k"])
    T = sc.n_slots
    n = v.n.assign(val=x[v.n["col"].to_numpy()])
    n = n[n["val"] > 0]
    y = v.y.assign(val=x[v.y["col"].to_numpy()])
    y = y[y["val"] > 0]
    # load on a config whose replicas round to zero is solver tolerance (integers within 1e-6): drop it
    y = y.merge(n[["r", "c", "t"]], on=["r", "c", "t"])
    xr = v.x.assign(val=x[v.x["col"].to_numpy()])
    xr = xr[xr["val"] > 0]
    u = v.u.assign(val=x[v.u["col"].to_numpy()])
    u = u[u["val"] > 0]
    R, K, O = sc.regions, sc.classes, sc.origins
    E = lm.expressions
    slots = []
    y_by_t = {t: g for t, g in y.groupby("t")}
    n_by_t = {t: g for t, g in n.groupby("t")}
    x_by_t = {t: g for t, g in xr.groupby("t")}
    u_by_t = {t: g for t, g in u.groupby("t")}
    empty = pd.DataFrame(columns=["k", "o", "r", "c", "t", "val", "col", "rtt", "slack_ms", "mu", "marg_w"])
    for t in range(T):
        nt = n_by_t.get(t, empty)
        yt = y_by_t.get(t, empty)
        xt = x_by_t.get(t, empty)
        ut = u_by_t.get(t, empty)
        deps = []
        dep_id = {}
        for (r, c), val in sorted(zip(zip(nt["r"], nt["c"]), nt["val"])):
            cr = cfg.loc[c]
            did = f"{R[r]}/{cr['key']}"
            dep_id[(r, c)] = did
            reps = int(round(val))
            loads = yt[(yt["r"] == r) & (yt["c"] == c)].sort_values("k")
            util = float(sum(loads["val"] / loads["mu"])) / reps if reps else 0.0
            power = float(cr["base_w"]) * reps + float(sum(loads["val"] * loads["marg_w"]))
            deps.append(Deployment(
                id=did, region=R[r], model=cr["model"], gpu=cr["gpu"], tp=int(cr["tp"]), pp=int(cr["pp"]),
                freq_mhz=float(cr["freq_mhz"]), replicas=reps, gpus=reps * int(cr["gpus"]), utilization=util,
                power_w=power,
                classes=[ClassLoad(**{"class": K[k], "rate_rps": float(vv),
                                      "ttft_ms": float(pairs.loc[(c, k), "ttft_ms"]),
                                      "tbt_ms": float(pairs.loc[(c, k), "tbt_ms"])})
                         for k, vv in zip(loads["k"], loads["val"])],
            ))
        routing = []
        for (k, r), grp in xt.groupby(["k", "r"], sort=True):
            yk = yt[(yt["k"] == k) & (yt["r"] == r)]
            split = _split_targets(grp, yk)
            for _, row in grp.sort_values("o").iterrows():
                o = int(row["o"])
                routing.append(Route(**{
                    "class": K[k], "origin": O[o], "region": R[r], "rate_rps": float(row["val"]),
                    "share": float(row["val"] / sc.demand[k, o, t]), "rtt_ms": float(row["rtt"]),
                    "targets": [Target(deployment=dep_id[(r, c)], rate_rps=float(q)) for c, q in split[o]],
                }))
        routing.sort(key=lambda q: (q.class_, q.origin, q.region))
        uns = [UnservedRate(**{"class": K[int(k)], "origin": O[int(o)], "rate_rps": float(val)})
               for k, o, val in sorted(zip(ut["k"], ut["o"], ut["val"]))]
        cols = np.concatenate([nt["col"].to_numpy(int), yt["col"].to_numpy(int)])
        st = SlotTotals(
            carbon_kg=float(E["carbon_kg"][cols] @ x[cols]), energy_kwh=float(E["energy_kwh"][cols] @ x[cols]),
            cost_usd=float(E["cost_usd"][cols] @ x[cols]), gpu_hours=float(E["gpu_hours"][cols] @ x[cols]),
        )
        slots.append(Slot(index=t, start=sc.slot_starts[t].strftime("%Y-%m-%dT%H:%M:%SZ"), deployments=deps,
                          routing=routing, unserved=uns, totals=st))
    unserved_req = float(E["unserved_requests"] @ x)
    total_req = float(sc.demand.sum() * sc.slot_seconds)
    totals = Totals(
        carbon_kg=float(E["carbon_kg"] @ x), energy_kwh=float(E["energy_kwh"] @ x), cost_usd=float(E["cost_usd"] @ x),
        gpu_cost_usd=float(E["gpu_cost_usd"] @ x), electricity_cost_usd=float(E["electricity_cost_usd"] @ x),
        gpu_hours=float(E["gpu_hours"] @ x), served_requests=total_req - unserved_req,
        unserved_requests=unserved_req, unserved_rps=unserved_req / (sc.slot_seconds * T),
    )
    obj_name = b.objective
    obj_val = float(primary @ x)
    opts = sc.options
    sec_val = float(lm.expressions[OBJECTIVE_EXPRESSION[secondary]] @ x) if secondary else None
    return Plan(
        scenario=ScenarioRef(name=sc.spec.name, fingerprint=sc.fingerprint, source=scenario_source(sc)),
        status=status,
        objective=ObjectiveValue(name=obj_name, value=obj_val, unit=UNITS[obj_name], secondary=secondary,
                                 secondary_value=sec_val),
        options=PlanOptions(objective=obj_name, budget_usd=opts.budget_usd, carbon_cap_kg=opts.carbon_cap_kg,
                            max_utilization=opts.max_utilization, unserved_allowed=opts.unserved.allowed,
                            unserved_penalty_per_request=opts.unserved.penalty_per_request,
                            tie_break=opts.tie_break.value),
        totals=totals,
        solver=SolverInfo(**info),
        pruning=PruningInfo(**md.pruning.as_dict()),
        horizon={"start": sc.spec.horizon.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "slot_minutes": sc.spec.horizon.slot_minutes, "slots": T},
        warnings=list(md.warnings),
        slots=slots,
    )
