"""From a solver's column values to a :class:`~planner.plan.schema.Plan`: cleaning, verification, extraction.

The solution is cleaned (noise below the solver's tolerance set to zero, replicas made whole),
recomputed row by row against the model (:func:`verify_solution`), and turned into the plan's
deployments, routes (with each route's split over the region's deployments) and totals.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from formulations import OBJECTIVE_EXPRESSION, LinearModel, ModelData, Vars, objective_vector, repair_replicas
from planner.errors import NumericalError
from planner.plan.schema import (
    CapacityFactor,
    ClassLoad,
    Deployment,
    ObjectiveValue,
    Plan,
    PlanOptions,
    PruningInfo,
    Route,
    ScenarioRef,
    Slot,
    ClassHeadroom,
    ScaleAction,
    SlotTotals,
    SolverInfo,
    Target,
    Totals,
    UnservedRate,
    VmUse,
)
from planner.scenario.defaults import EXAMPLES, default_scenario_path, example_path
from planner.scenario.loading import Scenario

UNITS = {"carbon": "kgCO2e", "energy": "kWh", "cost": "USD", "gpu-hours": "GPU-h"}


EPS = 1e-7  # solver values below this are noise (HiGHS's feasibility tolerance)


def _clean(lm: LinearModel, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).copy()
    x[np.abs(x) < EPS] = 0.0
    return repair_replicas(lm, np.maximum(x, 0.0), EPS)


def _scaling_from_replicas(md: ModelData, v: Vars, x: np.ndarray) -> np.ndarray:
    """With ``options.scaling``: replicas started and stopped as the changes of the (cleaned, whole)
    replica counts from slot to slot (from the initial fleet before the first), so that ``replica_flow``
    holds exactly after rounding and no replica is both started and stopped."""
    if v.up is None or not len(v.up):
        return x
    bof = md.configs[["c", "b"]]
    n = v.n.assign(val=x[v.n["col"].to_numpy()]).merge(bof, on="c")
    n = n.groupby(["r", "b", "t"], as_index=False)["val"].sum()
    n0 = md.initial.merge(bof, on="c").groupby(["r", "b"], as_index=False)["n0"].sum()
    n = v.up[["r", "b", "t"]].merge(n, on=["r", "b", "t"], how="left").fillna({"val": 0.0})
    n = n.merge(n0, on=["r", "b"], how="left").fillna({"n0": 0.0})
    n = n.sort_values(["r", "b", "t"])
    prev = n.groupby(["r", "b"])["val"].shift(1)
    prev = prev.where(n["t"] > 0, n["n0"]).to_numpy(float)
    delta = n["val"].to_numpy(float) - prev
    key = n[["r", "b", "t"]].assign(d=delta)
    up = v.up.merge(key, on=["r", "b", "t"])
    down = v.down.merge(key, on=["r", "b", "t"])
    x = x.copy()
    x[up["col"].to_numpy()] = np.maximum(up["d"].to_numpy(), 0.0)
    x[down["col"].to_numpy()] = np.maximum(-down["d"].to_numpy(), 0.0)
    if v.vm_up is not None and len(v.vm_up):
        vm = v.vm.assign(val=x[v.vm["col"].to_numpy()]).merge(md.initial_vms, on="v", how="left")
        vm = vm.fillna({"count": 0.0}).sort_values(["v", "t"])
        prev = vm.groupby("v")["val"].shift(1)
        prev = prev.where(vm["t"] > 0, vm["count"]).fillna(0.0).to_numpy(float)
        d = vm[["v", "t"]].assign(d=vm["val"].to_numpy(float) - prev)
        vu = v.vm_up.merge(d, on=["v", "t"])
        x[vu["col"].to_numpy()] = np.maximum(vu["d"].to_numpy(), 0.0)
    return x


def _vm_rows(md: ModelData, v: Vars, x: np.ndarray, t: int) -> list[VmUse]:
    """The VMs rented in slot t (with VMs), with their starts and stops under ``options.scaling``."""
    vm = v.vm[v.vm["t"] == t]
    val = {int(a): int(round(x[c])) for a, c in zip(vm["v"], vm["col"])}
    prev: dict[int, int] = {}
    if t == 0:
        prev = {int(a): int(round(c)) for a, c in zip(md.initial_vms["v"], md.initial_vms["count"])}
    else:
        pv = v.vm[v.vm["t"] == t - 1]
        prev = {int(a): int(round(x[c])) for a, c in zip(pv["v"], pv["col"])}
    out = []
    for row in md.vms.itertuples(index=False):
        now, before = val.get(int(row.v), 0), prev.get(int(row.v), 0)
        if now == 0 and (v.vm_up is None or before == 0):
            continue
        moved = dict(started=max(now - before, 0), stopped=max(before - now, 0)) if v.vm_up is not None else {}
        out.append(VmUse(region=row.region, vm=row.name, market=row.market, gpus_per_vm=int(row.gpus), count=now,
                         **moved))
    return out


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
    """What a plan records of where its scenario came from (see :class:`~planner.plan.schema.ScenarioRef`)."""
    if sc.document is None:
        return None
    doc = os.path.realpath(sc.document)
    if doc == os.path.realpath(default_scenario_path()):
        return "<default>"
    for name in EXAMPLES:
        if name != "default" and doc == os.path.realpath(example_path(name)):
            return f"<example:{name}>"
    return doc


def verify_solution(lm: LinearModel, x: np.ndarray, bound: float | None, objective: np.ndarray,
                    rel: float = 1e-6, abs_: float = 1e-6) -> None:
    """Recompute every row and the objective of the (cleaned) solution; raise NumericalError if the
    solver's answer does not hold: a row violated beyond ``max(abs_, rel x magnitude)``, a variable
    outside its bounds, a non-finite value, or an objective below the bound the solver proved."""
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


def make_plan(sc: Scenario, md: ModelData, lm: LinearModel, v: Vars, objective: str, x_raw: np.ndarray, status: str,
              info: dict, secondary: str | None) -> Plan:
    """The plan of solution ``x_raw`` of model ``lm`` (built from ``md`` for ``sc``), minimising ``objective``.

    ``info`` fills the plan's ``solver`` section; ``secondary`` names the tie-break objective that was
    applied (None: none). Raises NumericalError when the cleaned solution does not verify."""
    x = _scaling_from_replicas(md, v, _clean(lm, x_raw))
    primary = objective_vector(lm, md, objective)
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
    act_by_t: dict[int, pd.DataFrame] = {}
    if v.up is not None:
        acts = v.up[["r", "b", "t", "col"]].assign(started=x[v.up["col"].to_numpy()]).merge(
            v.down[["r", "b", "t", "col"]].rename(columns={"col": "dcol"}), on=["r", "b", "t"])
        acts["stopped"] = x[acts["dcol"].to_numpy()]
        act_by_t = {t: g for t, g in acts.groupby("t")}
    empty = pd.DataFrame(columns=["k", "o", "r", "c", "t", "val", "col", "rtt", "slack_ms", "mu", "marg_w", "resid_s",
                                  "cap", "act_w", "beta"])
    for t in range(T):
        nt = n_by_t.get(t, empty)
        yt = y_by_t.get(t, empty)
        xt = x_by_t.get(t, empty)
        ut = u_by_t.get(t, empty)
        deps = []
        dep_id = {}
        surge: dict[int, float] = {}
        for (r, c), val in sorted(zip(zip(nt["r"], nt["c"]), nt["val"])):
            cr = cfg.loc[c]
            did = f"{R[r]}/{cr['key']}"
            dep_id[(r, c)] = did
            reps = int(round(val))
            loads = yt[(yt["r"] == r) & (yt["c"] == c)].sort_values("k")
            util = float(sum(loads["val"] / loads["mu"])) / reps if reps else 0.0
            power = float(cr["floor_w"]) * reps + float(sum(loads["val"] * (loads["marg_w"] + loads["act_w"])))
            if reps:
                # each class's surge margin: load can grow until the deployment reaches utilisation 1
                uk = loads["val"].to_numpy(float) / loads["cap"].to_numpy(float) / reps
                for k, u_k in zip(loads["k"], uk):
                    if u_k > 0:
                        surge[int(k)] = min(surge.get(int(k), np.inf), 1.0 + (1.0 - float(uk.sum())) / float(u_k))
            deps.append(Deployment(
                id=did, region=R[r], model=cr["model"], gpu=cr["gpu"], tp=int(cr["tp"]), pp=int(cr["pp"]),
                freq_mhz=float(cr["freq_mhz"]), pool=cr["pool"] or None,
                market=None if md.vms is None else ("spot" if int(cr["market"]) else "on-demand"), replicas=reps, gpus=reps * int(cr["gpus"]),
                utilization=util,
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
        at = act_by_t.get(t)
        cols = np.concatenate([nt["col"].to_numpy(int), yt["col"].to_numpy(int),
                               at["col"].to_numpy(int) if at is not None else np.zeros(0, int)]
                              + ([] if v.vm is None else [v.vm.loc[v.vm["t"] == t, "col"].to_numpy(int)])
                              + ([] if v.vm_up is None else [v.vm_up.loc[v.vm_up["t"] == t, "col"].to_numpy(int)]))
        actions = None
        if v.up is not None:
            moved = at[(at["started"] > 0.5) | (at["stopped"] > 0.5)] if at is not None else []
            bkey = md.bases["key"].to_numpy()
            actions = sorted((ScaleAction(deployment=f"{R[int(a.r)]}/{bkey[int(a.b)]}",
                                          started=int(round(a.started)), stopped=int(round(a.stopped)))
                              for a in (moved.itertuples(index=False) if len(moved) else [])),
                             key=lambda q: q.deployment)
        st = SlotTotals(
            carbon_kg=float(E["carbon_kg"][cols] @ x[cols]), energy_kwh=float(E["energy_kwh"][cols] @ x[cols]),
            cost_usd=float(E["cost_usd"][cols] @ x[cols]), gpu_hours=float(E["gpu_hours"][cols] @ x[cols]),
        )
        slots.append(Slot(index=t, start=sc.slot_starts[t].strftime("%Y-%m-%dT%H:%M:%SZ"), deployments=deps,
                          routing=routing, unserved=uns, totals=st, actions=actions,
                          vms=None if v.vm is None else _vm_rows(md, v, x, t), headroom=[
                              ClassHeadroom(**{"class": K[k]}, demand_rps=float(sc.demand[k, :, t].sum()),
                                            burst_factor=float(sc.burst[k, t]), surge=surge.get(k))
                              for k in range(len(K)) if sc.demand[k, :, t].sum() > 0]))
    unserved_req = float(E["unserved_requests"] @ x)
    total_req = float(sc.demand.sum() * sc.slot_seconds)
    totals = Totals(
        carbon_kg=float(E["carbon_kg"] @ x), energy_kwh=float(E["energy_kwh"] @ x), cost_usd=float(E["cost_usd"] @ x),
        gpu_cost_usd=float(E["gpu_cost_usd"] @ x), electricity_cost_usd=float(E["electricity_cost_usd"] @ x),
        gpu_hours=float(E["gpu_hours"] @ x), served_requests=total_req - unserved_req,
        unserved_requests=unserved_req, unserved_rps=unserved_req / (sc.slot_seconds * T),
    )
    if v.up is not None:
        totals = totals.model_copy(update={
            "scaling_gpu_hours": float(E["scaling_gpu_hours"] @ x) if "scaling_gpu_hours" in E else 0.0,
            "replicas_started": int(round(float(x[v.up["col"].to_numpy()].sum()))),
            "replicas_stopped": int(round(float(x[v.down["col"].to_numpy()].sum())))})
    if v.vm is not None:
        vmv = v.vm
        vals = x[vmv["col"].to_numpy()]
        upd = {"vm_hours": float(vals.sum() * sc.slot_hours),
               "spot_gpu_hours": float((vals * vmv["gpus"].to_numpy() * (vmv["mk"] == 1).to_numpy()).sum()
                                       * sc.slot_hours)}
        if "spot_restart_gpu_hours" in E and E["spot_restart_gpu_hours"].any():
            upd["spot_restart_gpu_hours"] = float(E["spot_restart_gpu_hours"] @ x)
        if v.vm_up is not None:
            upd["vms_started"] = int(round(float(x[v.vm_up["col"].to_numpy()].sum())))
        totals = totals.model_copy(update=upd)
    obj_name = objective
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
                            tie_break=opts.tie_break.value, demand_statistic=opts.demand_statistic,
                            burst_absorption=opts.burst_absorption,
                            scaling=None if opts.scaling is None else opts.scaling.model_dump(mode="json"),
                            replica_limits=[q.model_dump(mode="json") for q in opts.replica_limits] or None,
                            capacity_factors=[CapacityFactor(**f.model_dump(by_alias=True))
                                              for f in opts.capacity_factors]),
        totals=totals,
        solver=SolverInfo(**info),
        pruning=PruningInfo(**md.pruning.as_dict()),
        horizon={"start": sc.spec.horizon.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "slot_minutes": sc.spec.horizon.slot_minutes, "slots": T},
        warnings=list(md.warnings),
        slots=slots,
    )
