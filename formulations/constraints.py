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
from .sets import TOL, ModelData, limit_matches


@dataclass
class Vars:
    """Column numbers of every variable, next to its index."""

    n: pd.DataFrame  # r, c, t, col      replicas (integer)
    x: pd.DataFrame  # k, o, r, t, col   routed rate (req/s)
    y: pd.DataFrame  # k, r, c, t, col   rate assigned to a config (req/s)
    u: pd.DataFrame  # k, o, t, col      unserved rate (req/s)
    up: pd.DataFrame | None = None    # r, b, t, col   replicas of base b started (options.scaling only)
    down: pd.DataFrame | None = None  # r, b, t, col   replicas of base b stopped (options.scaling only)
    vm: pd.DataFrame | None = None    # v, r, g, mk, t, col   VMs rented (regions with vms only)
    vm_up: pd.DataFrame | None = None  # v, r, t, col   VMs started (vms and options.scaling)
    fb: pd.DataFrame | None = None    # k, r, c, t, col   fallback rate on on-demand replicas (on-demand floors)


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
    * with ``options.scaling``: ``scale_out[r,b,t]`` in {0, ..., sum_{c in b} ub(replicas[r,c,t])} and
      ``scale_in[r,b,t]`` in {0, 1, ...} per deployment base b (model, GPU type, TP, PP, market:
      ``sets.deployment_bases``), over every slot of each (region, base) that serves or runs at the start
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
        nb = _base_index(md, n)
        b = lm.add_vars("scale_out", ("region", "base", "slot"), nb[["r", "b", "t"]].to_numpy(), 0.0,
                        nb["ub"].to_numpy(float), integer=True,
                        doc="replicas of deployment base b started for slot t in region r")
        upv = nb[["r", "b", "t"]].assign(col=b.cols)
        b = lm.add_vars("scale_in", ("region", "base", "slot"), nb[["r", "b", "t"]].to_numpy(), 0.0, INF,
                        integer=True, doc="replicas of deployment base b stopped at the start of slot t in region r")
        downv = nb[["r", "b", "t"]].assign(col=b.cols)
    vmv = vmupv = fbv = None
    if md.vms is not None:
        vmv = _vm_index(md, n)
        b = lm.add_vars("vms", ("vm", "slot"), vmv[["v", "t"]].to_numpy(), 0.0, vmv["ub"].to_numpy(float),
                        integer=True, doc="VMs of offer v (region, VM type, market) rented in slot t")
        vmv = vmv.drop(columns="ub").assign(col=b.cols)
        if md.scenario.options.scaling is not None:
            b = lm.add_vars("vm_starts", ("vm", "slot"), vmv[["v", "t"]].to_numpy(), 0.0, INF,
                            doc="VMs of offer v started for slot t (at least the increase over slot t-1)")
            vmupv = vmv[["v", "r", "t"]].assign(col=b.cols)
        fbi = _fallback_index(md, yv)
        if len(fbi):
            b = lm.add_vars("fallback", ("class", "region", "config", "slot"), fbi[["k", "r", "c", "t"]].to_numpy(),
                            0.0, INF, doc="req/s of class k that on-demand config c in region r would serve, slot t, "
                                          "if every spot VM were reclaimed")
            fbv = fbi.assign(col=b.cols)
    return Vars(nv, xv, yv, uv, upv, downv, vmv, vmupv, fbv)


def _base_index(md: ModelData, n: pd.DataFrame) -> pd.DataFrame:
    """(r, b, t) of every deployment base with replica variables in slot t; ub = the sum of its configs'."""
    nb = n[["r", "c", "t", "ub"]].merge(md.configs[["c", "b"]], on="c")
    return nb.groupby(["t", "r", "b"], as_index=False)["ub"].sum()[["r", "b", "t", "ub"]]


def _replicas_by_base(md: ModelData, v: Vars) -> pd.DataFrame:
    """The replica columns with their base: r, c, b, t, col."""
    return v.n.merge(md.configs[["c", "b"]], on="c")


def _vm_index(md: ModelData, n: pd.DataFrame) -> pd.DataFrame:
    """(v, t) for every VM offer whose region, GPU type and market have replica variables in slot t;
    ub = the offer's VMs available in t."""
    cfg = md.configs[["c", "g", "market"]].rename(columns={"market": "mk"})
    need = n[["r", "c", "t"]].merge(cfg, on="c")[["r", "g", "mk", "t"]].drop_duplicates()
    vo = md.vms[["v", "r", "g", "mk", "gpus", "flexible"]]
    out = need.merge(vo, on=["r", "g", "mk"]).sort_values(["t", "v"]).reset_index(drop=True)
    av = np.stack(md.vms["avail"].to_numpy()) if len(md.vms) else np.zeros((0, 1))
    out["ub"] = av[out["v"].to_numpy(), out["t"].to_numpy()]
    return out[["v", "r", "g", "mk", "t", "gpus", "flexible", "ub"]]


def _fallback_index(md: ModelData, y: pd.DataFrame) -> pd.DataFrame:
    """(k, r, c, t) of assignments of a class with an on-demand floor to an on-demand config."""
    floor = np.array([kc.on_demand_floor if kc.spot else 0.0 for kc in md.scenario.spec.classes])
    if not (floor > 0).any() or not (md.configs["market"] == 1).any():
        return y.iloc[0:0][["k", "r", "c", "t", "beta", "cap"]]
    od = md.configs.loc[md.configs["market"] == 0, "c"]
    sel = y["c"].isin(od).to_numpy() & (floor[y["k"].to_numpy()] > 0)
    return y.loc[sel, ["k", "r", "c", "t", "beta", "cap"]].reset_index(drop=True)


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

    For every (r, c, t):   sum_k beta[k,t] * assign[k,r,c,t] / cap[c,k] - U (1 - loss[r,c]) replicas[r,c,t] <= 0

    ``cap[c,k] = f[c,k] * mu[c,k]``: the profiled maximum rate times the pair's capacity factor
    (``options.capacity_factors``; 1 unless derated, e.g. by ``plan solve --verify``). ``beta[k,t] >= 1``
    is class k's burst factor in slot t (1 unless the class states ``arrivals``; ``Scenario.burst``).
    ``loss[r,c]`` is the expected share of time a spot replica is down after reclaims
    (``sets.spot_loss``: interruptions per hour x restart hours); 0 on demand.
    """
    n, y = v.n, v.y
    idx = n[["r", "c", "t"]].reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    a = y.merge(idx, on=["r", "c", "t"])
    loss = md.spot_loss[n["r"].to_numpy(np.int64), n["c"].to_numpy(np.int64)]  # int: n may be empty
    U = md.scenario.options.max_utilization * (1.0 - loss)
    rows = np.concatenate([a["row"].to_numpy(), idx["row"].to_numpy()])
    cols = np.concatenate([a["col"].to_numpy(), n["col"].to_numpy()])
    vals = np.concatenate([a["beta"].to_numpy() / a["cap"].to_numpy(), -U])
    lm.add_constraints("replica_capacity", ("region", "config", "slot"), idx[["r", "c", "t"]].to_numpy(),
                       rows, cols, vals, -INF, 0.0, doc="utilisation of config c's replicas within U")


def replica_flow(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Replicas carry over between slots (``options.scaling``), per deployment base b (model, GPU type,
    TP, PP, market): a replica may change its clock or pool between slots for free.

    For every (r, b, t):   sum_{c in b} replicas[r,c,t] - sum_{c in b} replicas[r,c,t-1]
                           - scale_out[r,b,t] + scale_in[r,b,t] = 0,
    with ``replicas[r,c,-1] = n0[r,c]``, the initial fleet (``options.scaling.initial``; 0 where none).
    """
    if v.up is None:
        return
    idx = v.up[["r", "b", "t"]].reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    n = _replicas_by_base(md, v)
    cur = n.merge(idx, on=["r", "b", "t"])
    prev = n.assign(t=n["t"] + 1).merge(idx, on=["r", "b", "t"])
    up = v.up.merge(idx, on=["r", "b", "t"])
    down = v.down.merge(idx, on=["r", "b", "t"])
    rows = np.concatenate([cur["row"], prev["row"], up["row"], down["row"]])
    cols = np.concatenate([cur["col"], prev["col"], up["col"], down["col"]])
    vals = np.concatenate([np.ones(len(cur)), -np.ones(len(prev)), -np.ones(len(up)), np.ones(len(down))])
    rhs = np.zeros(len(idx))
    init = md.initial
    if init is not None and len(init):
        n0 = init.merge(md.configs[["c", "b"]], on="c").groupby(["r", "b"], as_index=False)["n0"].sum()
        first = idx[idx["t"] == 0].merge(n0, on=["r", "b"])
        rhs[first["row"].to_numpy()] = first["n0"].to_numpy(float)
    lm.add_constraints("replica_flow", ("region", "base", "slot"), idx[["r", "b", "t"]].to_numpy(), rows, cols,
                       vals, rhs, rhs, doc="replicas of a base = previous slot's + started - stopped")


def scale_change(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """At most ``options.scaling.max_change`` replicas started plus stopped per (r, b, t), when set.

    For every (r, b, t):   scale_out[r,b,t] + scale_in[r,b,t] <= max_change
    """
    if v.up is None or md.scenario.options.scaling.max_change is None:
        return
    cap = float(md.scenario.options.scaling.max_change)
    n = len(v.up)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([v.up["col"].to_numpy(), v.down["col"].to_numpy()])
    lm.add_constraints("scale_change", ("region", "base", "slot"), v.up[["r", "b", "t"]].to_numpy(), rows, cols,
                       np.ones(2 * n), -INF, cap, doc="replicas started plus stopped within max_change")


def min_up_time(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """A started replica runs at least ``L = options.scaling.min_up_slots`` slots, when L > 1.

    For every (r, b, t):   sum_{tau = t-L+1 .. t} scale_out[r,b,tau] - sum_{c in b} replicas[r,c,t] <= 0
    (the replicas of a base started in the last L slots are all still running, at any clock).
    """
    if v.up is None or md.scenario.options.scaling.min_up_slots <= 1:
        return
    L = int(md.scenario.options.scaling.min_up_slots)
    idx = v.up[["r", "b", "t"]].reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    parts = [v.up[["r", "b", "t", "col"]].assign(t=v.up["t"] + lag) for lag in range(L)]
    ups = pd.concat(parts).merge(idx, on=["r", "b", "t"])
    n = _replicas_by_base(md, v).merge(idx, on=["r", "b", "t"])
    rows = np.concatenate([ups["row"], n["row"]])
    cols = np.concatenate([ups["col"], n["col"]])
    vals = np.concatenate([np.ones(len(ups)), -np.ones(len(n))])
    lm.add_constraints("min_up_time", ("region", "base", "slot"), idx[["r", "b", "t"]].to_numpy(), rows, cols, vals,
                       -INF, 0.0, doc="replicas started in the last min_up_slots slots still run")


def scale_down_delay(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """A deployment base keeps the replicas its load needed in each of the previous ``D =
    options.scaling.scale_down_delay_slots`` slots, when D > 0 (a scale-down stabilisation window).

    For every (r, b, t) and d = 1..D with t - d >= 0:
        sum_{c in b} replicas[r,c,t] - sum_{c in b} sum_k beta[k,t-d] assign[k,r,c,t-d] / (U (1 - loss[r,c]) cap[c,k]) >= 0
    (the load of slot t-d, counted in replicas of the configs that served it).
    """
    if v.up is None or md.scenario.options.scaling.scale_down_delay_slots <= 0:
        return
    D = int(md.scenario.options.scaling.scale_down_delay_slots)
    base = v.up[["r", "b", "t"]]
    idx = pd.concat([base[base["t"] >= d].assign(d=d) for d in range(1, D + 1)], ignore_index=True)
    if idx.empty:
        return
    idx = idx.sort_values(["t", "r", "b", "d"]).reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    n = _replicas_by_base(md, v).merge(idx, on=["r", "b", "t"])
    ys = v.y[["k", "r", "c", "t", "beta", "cap", "col"]].merge(md.configs[["c", "b"]], on="c")
    loss = md.spot_loss[ys["r"].to_numpy(np.int64), ys["c"].to_numpy(np.int64)]
    ys = ys.assign(w=ys["beta"] / (md.scenario.options.max_utilization * (1.0 - loss) * ys["cap"]))
    ys = ys.rename(columns={"t": "ty", "col": "ycol"})
    a = idx.assign(ty=idx["t"] - idx["d"]).merge(ys[["r", "b", "ty", "w", "ycol"]], on=["r", "b", "ty"])
    rows = np.concatenate([n["row"].to_numpy(), a["row"].to_numpy()])
    cols = np.concatenate([n["col"].to_numpy(), a["ycol"].to_numpy()])
    vals = np.concatenate([np.ones(len(n)), -a["w"].to_numpy()])
    labels = idx[["r", "b", "t", "d"]].to_numpy()
    lm.add_constraints("scale_down_delay", ("region", "base", "slot", "level"), labels, rows, cols, vals, 0.0, INF,
                       doc="replicas kept for the load of each of the previous scale_down_delay_slots slots")


def replica_limits(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Replicas of a model (in a region, on a GPU type, TP and PP, when stated) stay within
    ``options.replica_limits[i]`` in every slot.

    For every limit i and slot t:   min_i <= sum_{(r, c) matching i} replicas[r,c,t] <= max_i
    (a min above 0 holds only in slots where some matching deployment can exist).
    """
    lims = md.scenario.options.replica_limits
    if not lims:
        return
    rows, cols, lab, lo, hi = [], [], [], [], []
    for i, L in enumerate(lims):
        m = v.n.merge(limit_matches(md, L), on=["r", "c"])
        for t, mt in m.groupby("t", sort=True):
            rows.append(np.full(len(mt), len(lab)))
            cols.append(mt["col"].to_numpy())
            lab.append((i, int(t)))
            lo.append(float(L.min))
            hi.append(INF if L.max is None else float(L.max))
    if not lab:
        return
    rows = np.concatenate(rows)
    lm.add_constraints("replica_limits", ("limit", "slot"), np.array(lab), rows, np.concatenate(cols),
                       np.ones(len(rows)), np.array(lo), np.array(hi), doc="replicas within the limit's min and max")


def vm_packing(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """Replicas fit in the VMs rented (regions with ``vms``).

    A replica's ``item_c`` GPUs (``tp x pp``, or ``tp`` per pipeline stage when its model allows
    ``pipeline_across_vms``) sit in one VM. For every (r, g, market m, t) and every item size s among the
    configs there:

        sum_{c on (g, m): item_c >= s} gpus_c replicas[r,c,t]
            - sum_{VM offers v of (r, g, m): gpus_v >= s or per-GPU} gpus_v vms[v,t] <= 0

    With sizes that divide each other (the loader checks), these rows are exactly the condition for a
    packing to exist: placing the largest items first, every VM's free space stays a multiple of the
    next size. Per-GPU offers (VMs of one GPU that group freely) count at every size.
    """
    if v.vm is None:
        return
    cfg = md.configs[["c", "g", "market", "gpus", "item"]].rename(columns={"market": "mk"})
    n = v.n.merge(cfg, on="c")
    lev = n[["r", "g", "mk", "t", "item"]].drop_duplicates().rename(columns={"item": "s"})
    lev = lev.sort_values(["t", "r", "g", "mk", "s"]).reset_index(drop=True)
    lev["row"] = np.arange(len(lev))
    a = n.merge(lev, on=["r", "g", "mk", "t"])
    a = a[a["item"] >= a["s"]]
    b = v.vm.merge(lev, on=["r", "g", "mk", "t"])
    b = b[b["flexible"] | (b["gpus"] >= b["s"])]
    rows = np.concatenate([a["row"].to_numpy(), b["row"].to_numpy()])
    cols = np.concatenate([a["col"].to_numpy(), b["col"].to_numpy()])
    vals = np.concatenate([a["gpus"].to_numpy(float), -b["gpus"].to_numpy(float)])
    lm.add_constraints("vm_packing", ("region", "gpu", "slot", "gpus", "level"),
                       lev[["r", "g", "t", "s", "mk"]].to_numpy(), rows, cols, vals, -INF, 0.0,
                       doc="GPUs of replicas of at least s GPUs within the GPUs of VMs of at least s GPUs "
                           "(level: market, 0 on demand, 1 spot)")


def vm_flow(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """VMs started (with VMs and ``options.scaling``): at least the increase over the previous slot.

    For every (v, t):   vms[v,t] - vms[v,t-1] - vm_starts[v,t] <= 0,  with vms[v,-1] = the initial VMs
    (``sets.initial_vms``). A replica redeployed onto a VM that keeps running starts no VM and pays
    only its loading time.
    """
    if v.vm_up is None:
        return
    vm = v.vm.reset_index(drop=True)
    vm["row"] = np.arange(len(vm))
    prev = vm[["v", "t", "col"]].assign(t=vm["t"] + 1).merge(vm[["v", "t", "row"]], on=["v", "t"])
    rows = np.concatenate([vm["row"], prev["row"], vm["row"]])
    cols = np.concatenate([vm["col"], prev["col"], v.vm_up["col"]])
    vals = np.concatenate([np.ones(len(vm)), -np.ones(len(prev)), -np.ones(len(vm))])
    rhs = np.zeros(len(vm))
    ini = md.initial_vms
    if ini is not None and len(ini):
        first = vm[vm["t"] == vm["t"].min()].merge(ini, on="v") if len(vm) else vm
        first = first[first["t"] == 0]
        rhs[first["row"].to_numpy()] = first["count"].to_numpy(float)
    lm.add_constraints("vm_flow", ("vm", "slot"), vm[["v", "t"]].to_numpy(), rows, cols, vals, -INF, rhs,
                       doc="VMs started cover the increase in VMs rented")


def ondemand_floor(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """On-demand capacity for a stated share of each spot-eligible class's traffic (``on_demand_floor``).

    For every (k, r, t) with f_k > 0:   sum_{c on demand} fallback[k,r,c,t] - f_k sum_o route[k,o,r,t] >= 0
    and for every on-demand (r, c, t) ("fallback_capacity"):
        sum_{k: f_k > 0} beta[k,t] fallback[k,r,c,t] / cap[c,k]
            + sum_{k not on spot} beta[k,t] assign[k,r,c,t] / cap[c,k] - U replicas[r,c,t] <= 0
    (if every spot VM of the region were reclaimed, its on-demand replicas would still carry the classes
    that never run on spot and f_k of each other class's traffic; other classes are shed).
    """
    if v.fb is None:
        return
    spec = md.scenario.spec
    floor = np.array([kc.on_demand_floor if kc.spot else 0.0 for kc in spec.classes])
    fb = v.fb
    idx = fb[["k", "r", "t"]].drop_duplicates().sort_values(["t", "k", "r"]).reset_index(drop=True)
    idx["row"] = np.arange(len(idx))
    a = fb.merge(idx, on=["k", "r", "t"])
    x = v.x.merge(idx, on=["k", "r", "t"])
    rows = np.concatenate([a["row"].to_numpy(), x["row"].to_numpy()])
    cols = np.concatenate([a["col"].to_numpy(), x["col"].to_numpy()])
    vals = np.concatenate([np.ones(len(a)), -floor[x["k"].to_numpy()]])
    lm.add_constraints("ondemand_floor", ("class", "region", "slot"), idx[["k", "r", "t"]].to_numpy(), rows, cols,
                       vals, 0.0, INF, doc="on-demand fallback capacity for on_demand_floor of the traffic")
    nospot = np.array([not kc.spot for kc in spec.classes])
    n = v.n[v.n["c"].isin(md.configs.loc[md.configs["market"] == 0, "c"])].reset_index(drop=True)
    n["row"] = np.arange(len(n))
    a = fb.merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    y = v.y[nospot[v.y["k"].to_numpy()]].merge(n[["r", "c", "t", "row"]], on=["r", "c", "t"])
    keep = np.unique(a["row"].to_numpy())
    n = n[n["row"].isin(keep)]
    remap = np.full(len(v.n), -1)
    remap[n["row"].to_numpy()] = np.arange(len(n))
    a, y = a.assign(row=remap[a["row"]]), y[np.isin(y["row"], keep)]
    y = y.assign(row=remap[y["row"]])
    U = md.scenario.options.max_utilization
    rows = np.concatenate([a["row"], y["row"], np.arange(len(n))])
    cols = np.concatenate([a["col"], y["col"], n["col"]])
    vals = np.concatenate([a["beta"] / a["cap"], y["beta"] / y["cap"], np.full(len(n), -U)])
    lm.add_constraints("fallback_capacity", ("region", "config", "slot"), n[["r", "c", "t"]].to_numpy(), rows, cols,
                       vals, -INF, 0.0, doc="on-demand replicas carry the fallback load within U")


def gpu_availability(lm: LinearModel, md: ModelData, v: Vars) -> None:
    """GPUs in use never exceed those available (per-GPU offers, when no region states ``vms``; with VMs,
    ``vm_packing`` and the VMs' bounds take its place).

    For every (r, g, t):   sum_{c: gpu(c) = g} gpus_c * replicas[r,c,t] <= A[r,g,t]
    """
    if md.vms is not None:
        return
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

    With VMs (``regions[].vms``), rental counts whole VMs: ``gpu_hours = sum gpus_v h vms[v,t]`` and
    ``gpu_cost_usd = sum price_v h vms[v,t]``, and a VM's GPUs without a replica draw idle power
    (``idle_gpu[g] (gpus_v vms - gpus_c replicas)``, ``idle_per_gpu``). A spot VM is expected to be
    reclaimed ``rate_v h`` times per slot, each costing ``restart_h_v`` hours of its VM (rental, GPU-hours,
    idle power; expression ``spot_restart_gpu_hours``). With ``options.scaling``, a started replica adds
    its startup hours x its GPUs (at idle power, and at its GPUs' price); with VMs its loading hours only,
    and each VM started adds ``provision_s`` of the VM (expression ``scaling_gpu_hours``).
    """
    sc = md.scenario
    h = sc.slot_hours
    pue = sc.pue
    n = v.n.merge(md.configs[["c", "g", "gpus", "floor_w", "market"]], on="c")
    y = v.y
    terms = []  # (cols, r, t, kWh, GPU-hours, USD of rental) per column, summed by expression
    z = np.zeros

    def add(cols, r, t, kwh, gh, usd):
        terms.append((np.asarray(cols), np.asarray(r), np.asarray(t), np.asarray(kwh, float), np.asarray(gh, float),
                      np.asarray(usd, float)))

    vm_mode = v.vm is not None
    idle_gpu = idle_per_gpu(md)
    add(n["col"], n["r"], n["t"], pue[n["r"]] * h * n["floor_w"].to_numpy() / 1000.0,
        z(len(n)) if vm_mode else n["gpus"].to_numpy() * h,
        z(len(n)) if vm_mode else n["gpus"].to_numpy() * h * sc.gpu_price[n["r"].to_numpy(), n["g"].to_numpy()])
    add(y["col"], y["r"], y["t"], pue[y["r"]] * h * (y["marg_w"].to_numpy() + y["act_w"].to_numpy()) / 1000.0,
        z(len(y)), z(len(y)))
    if vm_mode:
        # VMs are rented whole; their GPUs without a replica draw idle power
        vm = v.vm.merge(md.vms[["v", "price", "rate", "restart_h"]], on="v")
        ig = idle_gpu[vm["g"].to_numpy()]
        add(vm["col"], vm["r"], vm["t"], pue[vm["r"]] * h * vm["gpus"].to_numpy() * ig / 1000.0,
            vm["gpus"].to_numpy() * h, vm["price"].to_numpy() * h)
        add(n["col"], n["r"], n["t"], -pue[n["r"]] * h * n["gpus"].to_numpy() * idle_gpu[n["g"].to_numpy()] / 1000.0,
            z(len(n)), z(len(n)))
        # expected spot reclaims: each one's restart hours of its VM, paid again (idle power, rental)
        sp = vm[vm["rate"] > 0]
        rh = (sp["rate"] * h * sp["restart_h"]).to_numpy()
        rgh = rh * sp["gpus"].to_numpy()
        add(sp["col"], sp["r"], sp["t"], pue[sp["r"]] * rgh * idle_gpu[sp["g"].to_numpy()] / 1000.0, rgh,
            rh * sp["price"].to_numpy())
        lm.add_expression("spot_restart_gpu_hours", sp["col"].to_numpy(), rgh)
    if v.up is not None and len(v.up):
        # a started replica is paid for its startup time (idle power, its GPUs) before the slot it serves;
        # with VMs, for its loading time (provisioning is paid per VM started)
        st = v.up.merge(md.bases[["b", "g", "gpus", "idle_w", "market", "startup_h"]], on="b")
        sh = st["startup_h"].to_numpy(float)
        sgh = st["gpus"].to_numpy() * sh
        price = gpu_price_per_market(md)[st["r"].to_numpy(), st["g"].to_numpy(), st["market"].to_numpy()]
        add(st["col"], st["r"], st["t"], pue[st["r"]] * sh * st["idle_w"].to_numpy() / 1000.0, sgh, sgh * price)
        scols, sgh_all = [st["col"].to_numpy()], [sgh]
        if v.vm_up is not None and len(v.vm_up):
            vu = v.vm_up.merge(md.vms[["v", "g", "gpus", "price"]], on="v")
            ph = float(sc.options.scaling.provision_s) / 3600.0
            vgh = vu["gpus"].to_numpy() * ph
            add(vu["col"], vu["r"], vu["t"], pue[vu["r"]] * vgh * idle_gpu[vu["g"].to_numpy()] / 1000.0, vgh,
                vu["price"].to_numpy() * ph)
            scols.append(vu["col"].to_numpy())
            sgh_all.append(vgh)
        lm.add_expression("scaling_gpu_hours", np.concatenate(scols), np.concatenate(sgh_all))
    cols = np.concatenate([tm[0] for tm in terms])
    rr = np.concatenate([tm[1] for tm in terms]).astype(np.int64)
    tt = np.concatenate([tm[2] for tm in terms]).astype(np.int64)
    e = np.concatenate([tm[3] for tm in terms])
    gh = np.concatenate([tm[4] for tm in terms])
    usd = np.concatenate([tm[5] for tm in terms])
    lm.add_expression("energy_kwh", cols, e)
    lm.add_expression("carbon_kg", cols, e * sc.carbon[rr, tt] / 1000.0)
    lm.add_expression("gpu_hours", cols, gh)
    lm.add_expression("gpu_cost_usd", cols, usd)
    lm.add_expression("electricity_cost_usd", cols, e * sc.elec_price[rr, tt] / 1000.0)
    lm.expressions["cost_usd"] = snap(lm.expressions["gpu_cost_usd"] + lm.expressions["electricity_cost_usd"])
    lm.add_expression("unserved_requests", v.u["col"].to_numpy(), np.full(len(v.u), sc.slot_seconds))


def idle_per_gpu(md: ModelData) -> np.ndarray:
    """[G] idle power of one GPU of each type: over the profile table's configs of that type, the smallest
    (largest ``idle_power_w`` of the config's rows) / (tp x pp); 0 where the type has no rows."""
    sc = md.scenario
    out = np.zeros(len(sc.gpus))
    prof = sc.profiles
    if len(prof):
        cfg = prof.groupby(["gpu", "model", "tp", "pp", "freq_mhz"], as_index=False)["idle_power_w"].max()
        per = (cfg["idle_power_w"] / (cfg["tp"] * cfg["pp"])).groupby(cfg["gpu"]).min()
        gix = {g: i for i, g in enumerate(sc.gpus)}
        for g, w in per.items():
            if g in gix:
                out[gix[g]] = float(w)
    return out


def gpu_price_per_market(md: ModelData) -> np.ndarray:
    """[R, G, 2] USD per GPU-hour: the per-GPU price, or with VMs the cheapest offer's price per GPU."""
    sc = md.scenario
    R, G = len(sc.regions), len(sc.gpus)
    out = np.full((R, G, 2), np.nan)
    if md.vms is None:
        out[:, :, 0] = sc.gpu_price
        return out
    for row in md.vms.itertuples(index=False):
        cur = out[row.r, row.g, row.mk]
        out[row.r, row.g, row.mk] = row.gpu_price if np.isnan(cur) else min(cur, row.gpu_price)
    return out


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
    scale_down_delay(lm, md, v)
    replica_limits(lm, md, v)
    gpu_availability(lm, md, v)
    vm_packing(lm, md, v)
    vm_flow(lm, md, v)
    ondemand_floor(lm, md, v)
    if coupling:
        budget(lm, md, v)
        carbon_cap(lm, md, v)
    return lm, v
