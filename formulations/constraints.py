"""Variables, constraint families and objective expressions of the serving-plan MILP.

Notation (see docs/formulation.md): regions r, GPU types g, configs c (model, GPU, TP, PP, freq),
classes k, origins o, slots t; ``D[k,o,t]`` demand (req/s), ``mu[c,k]`` max rate of one replica,
``U`` max utilisation, ``A[r,g,t]`` GPUs available, ``rtt[o,r]`` and ``slack[c,k]`` (network budget).

Each family is one function that appends one named block of rows to the :class:`LinearModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .linear import INF, LinearModel, snap
from .sets import TOL, ModelData


@dataclass
class Vars:
    """Column numbers of every variable, next to its index."""

    n: pd.DataFrame  # r, c, t, col      replicas (integer)
    x: pd.DataFrame  # k, o, r, t, col   routed rate (req/s)
    y: pd.DataFrame  # k, r, c, t, col   rate assigned to a config (req/s)
    u: pd.DataFrame  # k, o, t, col      unserved rate (req/s)
    up: pd.DataFrame | None = None    # r, c, t, col   replicas started (options.scaling only)
    down: pd.DataFrame | None = None  # r, c, t, col   replicas stopped (options.scaling only)


def _rows(frame: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Unique row index over ``keys`` (sorted) and each frame row's row number."""
    idx = frame[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    rown = frame[keys].merge(idx, on=keys, how="left")["row"].to_numpy()
    return idx, rown


# ------------------------------------------------------------------------------------- variables


def variables(lm: LinearModel, md: ModelData) -> Vars:
    """Declare the four variable families.

    * ``replicas[r,c,t]`` in {0, 1, ..., floor(A[r,g(c),t] / gpus_c)}
    * ``route[k,o,r,t]`` in [0, D[k,o,t]]: rate of class k from origin o served in region r
    * ``assign[k,r,c,t]`` >= 0: rate of class k in region r served by config c
    * ``unserved[k,o,t]`` in [0, D[k,o,t]] (only when unserved demand is allowed)
    * with ``options.scaling``: ``scale_out[r,c,t]`` in {0, ..., ub(replicas)} and ``scale_in[r,c,t]`` in
      {0, 1, ...}, over every slot of each (region, config) that serves or runs at the start
    """
    n = md.n_index
    b = lm.add_vars("replicas", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), 0.0,
                    n["ub"].to_numpy(float), integer=True, doc="replicas of config c in region r, slot t")
    nv = n[["r", "c", "t"]].assign(col=b.cols)
    x = md.x_index
    b = lm.add_vars("route", ("class", "origin", "region", "slot"), x[["k", "o", "r", "t"]].to_numpy(), 0.0,
                    x["ub"].to_numpy(float), doc="req/s of class k from origin o served in region r, slot t")
    xv = x[["k", "o", "r", "t", "rtt"]].assign(col=b.cols)
    y = md.y_index
    b = lm.add_vars("assign", ("class", "region", "config", "slot"), y[["k", "r", "c", "t"]].to_numpy(), 0.0, INF,
                    doc="req/s of class k in region r served by config c, slot t")
    yv = y.merge(md.pairs[["c", "k", "mu", "cap", "slack_ms", "marg_w", "resid_s"]], on=["c", "k"],
                 how="left").assign(col=b.cols)
    yv["beta"] = md.scenario.burst[yv["k"].to_numpy(), yv["t"].to_numpy()] if len(yv) else np.zeros(0)
    yv["act_w"] = activity_power(md, yv)
    u = md.u_index
    b = lm.add_vars("unserved", ("class", "origin", "slot"), u[["k", "o", "t"]].to_numpy(), 0.0,
                    u["ub"].to_numpy(float), doc="req/s of class k from origin o left unserved in slot t")
    uv = u[["k", "o", "t"]].assign(col=b.cols)
    upv = downv = None
    if md.scenario.options.scaling is not None:
        b = lm.add_vars("scale_out", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), 0.0,
                        n["ub"].to_numpy(float), integer=True, doc="replicas of config c started for slot t in region r")
        upv = n[["r", "c", "t"]].assign(col=b.cols)
        b = lm.add_vars("scale_in", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), 0.0, INF,
                        integer=True, doc="replicas of config c stopped at the start of slot t in region r")
        downv = n[["r", "c", "t"]].assign(col=b.cols)
    return Vars(nv, xv, yv, uv, upv, downv)


# ----------------------------------------------------------------------------- constraint families


def demand_served(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Every request is routed somewhere (or counted as unserved, when allowed).

    For every (k, o, t) with D[k,o,t] > 0:   sum_r route[k,o,r,t] + unserved[k,o,t] = D[k,o,t]
    """
    terms = pd.concat([v.x[["k", "o", "t", "col"]], v.u[["k", "o", "t", "col"]]], ignore_index=True)
    if terms.empty:
        return
    idx, row = _rows(terms, ["k", "o", "t"])
    d = md.scenario.demand[idx["k"].to_numpy(), idx["o"].to_numpy(), idx["t"].to_numpy()]
    lm.add_constraints("demand_served", ("class", "origin", "slot"), idx[["k", "o", "t"]].to_numpy(),
                       row, terms["col"].to_numpy(), np.ones(len(terms)), d, d,
                       doc="routed + unserved rate equals demand")


def route_balance(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Traffic routed into a region is assigned to that region's configs.

    For every (k, r, t):   sum_o route[k,o,r,t] - sum_c assign[k,r,c,t] = 0
    """
    terms = pd.concat(
        [v.x[["k", "r", "t", "col"]].assign(a=1.0), v.y[["k", "r", "t", "col"]].assign(a=-1.0)], ignore_index=True
    )
    if terms.empty:
        return
    idx, row = _rows(terms, ["k", "r", "t"])
    lm.add_constraints("route_balance", ("class", "region", "slot"), idx[["k", "r", "t"]].to_numpy(),
                       row, terms["col"].to_numpy(), terms["a"].to_numpy(), 0.0, 0.0,
                       doc="rate routed into region r equals rate assigned to its configs")


def latency_nesting(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """TTFT (and e2e) hold end to end for every unit of traffic, network RTT included.

    Traffic from origin o may use config c in region r only if ``rtt[o,r] <= slack[c,k]``. For a
    fixed (k, r, t) the configs usable from o form a set that shrinks as rtt[o,r] grows (they are
    nested), so by Hall's theorem an assignment of each origin's traffic to usable configs exists
    iff, for every RTT level rho of the origins present,

        sum_{o: rtt[o,r] >= rho} route[k,o,r,t]  <=  sum_{c: slack[c,k] >= rho} assign[k,r,c,t]

    Levels whose two sums are the whole of route_balance's sums are implied and skipped. The row is
    labelled by the origin o* that defines the level (the first origin with rtt[o*,r] = rho).
    """
    x, y = v.x, v.y
    if x.empty:
        return
    lev = (x.sort_values(["k", "r", "t", "rtt", "o"]).drop_duplicates(["k", "r", "t", "rtt"])
           [["k", "r", "t", "rtt", "o"]].rename(columns={"rtt": "rho", "o": "ostar"}))
    xl = x[["k", "r", "t", "rtt", "col"]].merge(lev, on=["k", "r", "t"])
    xl = xl[xl["rtt"] >= xl["rho"] - TOL]
    yl = y[["k", "r", "t", "slack_ms", "col"]].merge(lev, on=["k", "r", "t"])
    yl = yl[yl["slack_ms"] >= yl["rho"] - TOL]
    keys = ["k", "r", "t", "rho"]
    nx = xl.groupby(keys).size().rename("nx")
    ny = yl.groupby(keys).size().rename("ny")
    totx = x.groupby(["k", "r", "t"]).size().rename("tx")
    toty = y.groupby(["k", "r", "t"]).size().rename("ty")
    cnt = lev.set_index(keys).join(nx).join(ny).fillna(0).reset_index()
    cnt = cnt.merge(totx.reset_index(), on=["k", "r", "t"], how="left").merge(
        toty.reset_index(), on=["k", "r", "t"], how="left").fillna(0)
    need = cnt[(cnt["nx"] < cnt["tx"]) | (cnt["ny"] < cnt["ty"])][keys + ["ostar"]]
    if need.empty:
        return
    need = need.sort_values(["t", "k", "r", "rho"]).reset_index(drop=True)
    need["row"] = np.arange(len(need))
    a = xl.merge(need, on=keys)
    b = yl.merge(need, on=keys)
    rows = np.concatenate([a["row"].to_numpy(), b["row"].to_numpy()])
    cols = np.concatenate([a["col"].to_numpy(), b["col"].to_numpy()])
    vals = np.concatenate([np.ones(len(a)), -np.ones(len(b))])
    lm.add_constraints("latency_nesting", ("class", "region", "slot", "origin"),
                       need[["k", "r", "t", "ostar"]].to_numpy(), rows, cols, vals, -INF, 0.0,
                       doc="traffic from origins at least as far as o* fits configs whose TTFT/e2e leave room "
                           "for that RTT")


def activity_power(md: ModelData, y: pd.DataFrame) -> np.ndarray:
    """W per req/s of class k on config c in slot t that replicas draw above idle while they have work,
    when some class states ``arrivals`` (0 otherwise: replicas are then taken as never idle and draw
    ``base_c`` whatever their load; see ``expressions``).

        act[c,k,t] = (base_c - idle_c) * b(m) / x,   x = U cap[c,k] / beta[k,t],   m = x resid[c,k]

    At the operating point ``replica_capacity`` allows, a replica carries ``x`` req/s, each request
    resident ``resid[c,k]`` s (the profile row's ``service_ms``), so it holds ``m`` requests on average
    (Little), and has work a share ``b(m) = E_t[min(1, m r_t)]`` of the time (``arrivals.busy_share``:
    ``r_t`` the class's time-weighted rate ratios; ``min(1, m)`` without them). Spread over its load, so
    that ``n`` replicas at that point draw ``idle n + (base - idle) b n + marg load``: exact for a
    deployment at its operating point serving classes of one kind (all lightly loaded, or all
    saturated); a saturated class spread thinly over replicas kept idle for another class's bursts is
    counted at its own operating point's share (docs/formulation.md).
    """
    sc = md.scenario
    if not sc.bursty or not len(y):
        return np.zeros(len(y))
    cf = md.configs.set_index("c")
    c = y["c"].to_numpy()
    k = y["k"].to_numpy()
    gap = (cf.loc[c, "base_w"].to_numpy(float) - cf.loc[c, "idle_w"].to_numpy(float)).clip(min=0.0)
    x = sc.options.max_utilization * y["cap"].to_numpy(float) / y["beta"].to_numpy(float)
    resid = y["resid_s"].to_numpy(float)
    lam = sc.demand.sum(axis=1)[k, y["t"].to_numpy()]
    b = np.zeros(len(y))
    for kk, kc in enumerate(sc.spec.classes):
        sel = k == kk
        if sel.any():
            b[sel] = sc.busy_share(kc.name, x[sel] * resid[sel], lam[sel] * resid[sel])
    return gap * b / x


def replica_capacity(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """The load on a config's replicas stays within their headroom.

    For every (r, c, t):   sum_k beta[k,t] * assign[k,r,c,t] / cap[c,k] - U * replicas[r,c,t] <= 0

    ``cap[c,k] = f[c,k] * mu[c,k]``: the profiled maximum rate times the pair's capacity factor
    (``options.capacity_factors``; 1 unless derated, e.g. by ``plan solve --verify``). ``beta[k,t] >= 1``
    is class k's burst factor in slot t (1 unless the class states ``arrivals``; ``Scenario.burst``).
    """
    n, y = v.n, v.y
    idx = n[["r", "c", "t"]].reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    a = y.merge(idx, on=["r", "c", "t"])
    U = md.scenario.options.max_utilization
    rows = np.concatenate([a["row"].to_numpy(), idx["row"].to_numpy()])
    cols = np.concatenate([a["col"].to_numpy(), n["col"].to_numpy()])
    vals = np.concatenate([a["beta"].to_numpy() / a["cap"].to_numpy(), np.full(len(n), -U)])
    lm.add_constraints("replica_capacity", ("region", "config", "slot"), idx[["r", "c", "t"]].to_numpy(),
                       rows, cols, vals, -INF, 0.0, doc="utilisation of config c's replicas within U")


def replica_flow(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Replicas carry over between slots (``options.scaling``).

    For every (r, c, t):   replicas[r,c,t] - replicas[r,c,t-1] - scale_out[r,c,t] + scale_in[r,c,t] = 0,
    with ``replicas[r,c,-1] = n0[r,c]``, the initial fleet (``options.scaling.initial``; 0 where none).
    """
    if v.up is None:
        return
    n = v.n.reset_index(drop=True)
    n["row"] = np.arange(len(n))
    prev = n[["r", "c", "t", "col"]].assign(t=n["t"] + 1).merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    up = v.up.merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    down = v.down.merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    rows = np.concatenate([n["row"], prev["row"], up["row"], down["row"]])
    cols = np.concatenate([n["col"], prev["col"], up["col"], down["col"]])
    vals = np.concatenate([np.ones(len(n)), -np.ones(len(prev)), -np.ones(len(up)), np.ones(len(down))])
    rhs = np.zeros(len(n))
    init = md.initial
    if init is not None and len(init):
        first = n[n["t"] == 0].merge(init, on=["r", "c"])
        rhs[first["row"].to_numpy()] = first["n0"].to_numpy(float)
    lm.add_constraints("replica_flow", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), rows, cols,
                       vals, rhs, rhs, doc="replicas = previous slot's + started - stopped")


def scale_change(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """At most ``options.scaling.max_change`` replicas started plus stopped per (r, c, t), when set.

    For every (r, c, t):   scale_out[r,c,t] + scale_in[r,c,t] <= max_change
    """
    if v.up is None or md.scenario.options.scaling.max_change is None:
        return
    cap = float(md.scenario.options.scaling.max_change)
    n = len(v.up)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([v.up["col"].to_numpy(), v.down["col"].to_numpy()])
    lm.add_constraints("scale_change", ("region", "config", "slot"), v.up[["r", "c", "t"]].to_numpy(), rows, cols,
                       np.ones(2 * n), -INF, cap, doc="replicas started plus stopped within max_change")


def min_up_time(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """A started replica runs at least ``L = options.scaling.min_up_slots`` slots, when L > 1.

    For every (r, c, t):   sum_{tau = t-L+1 .. t} scale_out[r,c,tau] - replicas[r,c,t] <= 0
    (the replicas started in the last L slots are all still running).
    """
    if v.up is None or md.scenario.options.scaling.min_up_slots <= 1:
        return
    L = int(md.scenario.options.scaling.min_up_slots)
    n = v.n.reset_index(drop=True)
    n["row"] = np.arange(len(n))
    parts = [v.up[["r", "c", "t", "col"]].assign(t=v.up["t"] + lag) for lag in range(L)]
    ups = pd.concat(parts).merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    rows = np.concatenate([ups["row"], n["row"]])
    cols = np.concatenate([ups["col"], n["col"]])
    vals = np.concatenate([np.ones(len(ups)), -np.ones(len(n))])
    lm.add_constraints("min_up_time", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), rows, cols, vals,
                       -INF, 0.0, doc="replicas started in the last min_up_slots slots still run")


def gpu_availability(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """GPUs in use never exceed those available.

    For every (r, g, t):   sum_{c: gpu(c) = g} gpus_c * replicas[r,c,t] <= A[r,g,t]
    """
    n = v.n.merge(md.configs[["c", "g", "gpus"]], on="c")
    if n.empty:
        return
    idx, row = _rows(n, ["r", "g", "t"])
    A = md.scenario.availability[idx["r"].to_numpy(), idx["g"].to_numpy(), idx["t"].to_numpy()]
    lm.add_constraints("gpu_availability", ("region", "gpu", "slot"), idx[["r", "g", "t"]].to_numpy(), row,
                       n["col"].to_numpy(), n["gpus"].to_numpy(float), -INF, A.astype(float),
                       doc="GPUs of type g used in region r within availability")


def budget(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Spending over the horizon stays within the budget B (when set).

    sum cost_usd <= B, with cost_usd = GPU rental + priced electricity (see expressions()).
    """
    B = md.scenario.options.budget_usd
    if B is None:
        return
    vec = lm.expressions["cost_usd"]
    cols = np.nonzero(vec)[0]
    lm.add_constraints("budget", ("scope",), [[0]], np.zeros(len(cols)), cols, vec[cols], -INF, float(B),
                       doc="GPU rental plus electricity within the budget")


def carbon_cap(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Emissions over the horizon stay within the cap (when set):   sum carbon_kg <= cap."""
    cap = md.scenario.options.carbon_cap_kg
    if cap is None:
        return
    vec = lm.expressions["carbon_kg"]
    cols = np.nonzero(vec)[0]
    lm.add_constraints("carbon_cap", ("scope",), [[0]], np.zeros(len(cols)), cols, vec[cols], -INF, float(cap),
                       doc="operational emissions within the cap")


# --------------------------------------------------------------------------------- expressions


def expressions(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Linear expressions of the totals (objective candidates), over the horizon.

    Power of the replicas of c in (r, t): ``base_c * replicas + sum_k marg[c,k] * assign[k,r,c,t]``
    with ``marg[c,k] = max(busy[c,k] - base_c, 0) / mu[c,k]`` (W per req/s): each replica draws
    base + (busy - base) x utilisation. ``base_c`` is the zero-load intercept of a replica's power under
    continuous batching, the largest ``active_power_w`` of c's rows (``idle_power_w`` where empty): see
    ``sets.config_class_pairs``. When some class states arrivals, replicas without work draw idle power:
    ``idle_c * replicas + sum_k (marg[c,k] + act[c,k,t]) * assign[k,r,c,t]`` (``activity_power``;
    ``idle_c`` the largest ``idle_power_w`` of c's rows). With slot length h hours and PUE_r:

    * energy_kwh   = sum PUE_r * h * power / 1000
    * carbon_kg    = sum PUE_r * h * power / 1000 * CI[r,t] / 1000
    * gpu_hours    = sum gpus_c * h * replicas
    * gpu_cost_usd = sum gpus_c * h * price[r,g] * replicas
    * electricity_cost_usd = sum energy_kwh[r,t] * elec_price[r,t] / 1000   (USD/MWh)
    * cost_usd     = gpu_cost_usd + electricity_cost_usd
    * unserved_requests = sum slot_seconds * unserved[k,o,t]
    """
    sc = md.scenario
    h = sc.slot_hours
    n = v.n.merge(md.configs[["c", "g", "gpus", "floor_w"]], on="c")
    y = v.y
    pue = sc.pue
    e_n = pue[n["r"]] * h * n["floor_w"].to_numpy() / 1000.0
    e_y = pue[y["r"]] * h * (y["marg_w"].to_numpy() + y["act_w"].to_numpy()) / 1000.0
    cols = np.concatenate([n["col"].to_numpy(), y["col"].to_numpy()])
    e = np.concatenate([e_n, e_y])
    rr = np.concatenate([n["r"].to_numpy(), y["r"].to_numpy()])
    tt = np.concatenate([n["t"].to_numpy(), y["t"].to_numpy()])
    if v.up is not None and len(v.up):
        # a started replica is paid for its startup time (idle power, its GPUs) before the slot it serves
        st = v.up.merge(md.configs[["c", "g", "gpus", "idle_w"]], on="c")
        sh = md.startup_h[st["c"].to_numpy()]
        cols = np.concatenate([cols, st["col"].to_numpy()])
        e = np.concatenate([e, pue[st["r"]] * sh * st["idle_w"].to_numpy() / 1000.0])
        rr = np.concatenate([rr, st["r"].to_numpy()])
        tt = np.concatenate([tt, st["t"].to_numpy()])
    lm.add_expression("energy_kwh", cols, e)
    lm.add_expression("carbon_kg", cols, e * sc.carbon[rr, tt] / 1000.0)
    gh = n["gpus"].to_numpy() * h
    gcols = n["col"].to_numpy()
    gr, gg = n["r"].to_numpy(), n["g"].to_numpy()
    if v.up is not None and len(v.up):
        sgh = st["gpus"].to_numpy() * md.startup_h[st["c"].to_numpy()]
        lm.add_expression("scaling_gpu_hours", st["col"].to_numpy(), sgh)
        gh = np.concatenate([gh, sgh])
        gcols = np.concatenate([gcols, st["col"].to_numpy()])
        gr, gg = np.concatenate([gr, st["r"].to_numpy()]), np.concatenate([gg, st["g"].to_numpy()])
    lm.add_expression("gpu_hours", gcols, gh)
    gcost = gh * sc.gpu_price[gr, gg]
    lm.add_expression("gpu_cost_usd", gcols, gcost)
    ecost = e * sc.elec_price[rr, tt] / 1000.0
    lm.add_expression("electricity_cost_usd", cols, ecost)
    lm.expressions["cost_usd"] = snap(lm.expressions["gpu_cost_usd"] + lm.expressions["electricity_cost_usd"])
    lm.add_expression("unserved_requests", v.u["col"].to_numpy(), np.full(len(v.u), sc.slot_seconds))


def repair_replicas(lm: LinearModel, x: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Round replicas to whole numbers, never below what their load needs.

    A MIP solver accepts integers within a tolerance (HiGHS: 1e-6), so a tiny load may sit on
    "0.000001 replicas". From each ``replica_capacity`` row ``sum_k a_k assign_k - U replicas <= 0``:
    replicas = max(round(replicas), ceil(sum_k a_k assign_k / U - 1e-6)) wherever the load exceeds eps.
    The 1e-6 is the LP feasibility slack: a full replica whose load the solver reports as 1 + 1e-7
    of its capacity stays one replica (the checker accepts 1e-6 relative), instead of becoming two,
    which could exceed the GPUs available.
    """
    x = np.asarray(x, float).copy()
    ints = lm.integrality
    x[ints] = np.round(x[ints])
    blk = lm.con_block("replica_capacity")
    if blk is None:
        return x
    neg = blk.vals < 0
    ncol = np.full(blk.size, -1)
    ncol[blk.rows[neg]] = blk.cols[neg]
    U = np.zeros(blk.size)
    U[blk.rows[neg]] = -blk.vals[neg]
    load = np.zeros(blk.size)
    np.add.at(load, blk.rows[~neg], blk.vals[~neg] * np.maximum(x[blk.cols[~neg]], 0.0))
    ok = (ncol >= 0) & (load > eps) & (U > 0)
    need = np.ceil(load[ok] / U[ok] - 1e-6)
    x[ncol[ok]] = np.maximum(x[ncol[ok]], need)
    return x


OBJECTIVE_EXPRESSION = {"carbon": "carbon_kg", "energy": "energy_kwh", "cost": "cost_usd", "gpu-hours": "gpu_hours"}
"""The expression each objective minimises."""

SECONDARY = {"carbon": "cost", "energy": "cost", "cost": "carbon", "gpu-hours": "cost"}
"""Lexicographic tie-break: the objective minimised among plans optimal for the primary."""


def objective_vector(lm: LinearModel, md: ModelData, objective: str) -> np.ndarray:
    """``expr[objective] + penalty * unserved_requests`` (the penalty term only when allowed)."""
    vec = lm.expressions[OBJECTIVE_EXPRESSION[objective]].copy()
    un = md.scenario.options.unserved
    if un.allowed:
        vec = snap(vec + un.penalty_per_request * lm.expressions["unserved_requests"])
    return vec


def build(md: ModelData, coupling: bool = True) -> tuple[LinearModel, Vars]:
    """The whole model, family by family, in the order of docs/formulation.md.

    ``coupling=False`` leaves out the families that couple slots (budget, carbon_cap): without them
    the model is block-diagonal by slot and each slot can be solved on its own.
    """
    lm = LinearModel(labels=md.labels | {"scope": ["horizon"]})
    v = variables(lm, md)
    expressions(lm, md, v)
    demand_served(lm, md, v)
    route_balance(lm, md, v)
    latency_nesting(lm, md, v)
    replica_capacity(lm, md, v)
    replica_flow(lm, md, v)
    scale_change(lm, md, v)
    min_up_time(lm, md, v)
    gpu_availability(lm, md, v)
    if coupling:
        budget(lm, md, v)
        carbon_cap(lm, md, v)
    return lm, v
