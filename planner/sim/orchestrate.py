"""Verify a plan by simulation: replay traffic against the plan's fleet and measure what it delivers.

:func:`simulate` takes a plan and the scenario it was made for and, slot by slot, generates
requests (:mod:`planner.sim.arrivals`: Poisson at the planned rates, or replayed traces), routes
them by the plan's shares (:mod:`planner.sim.fleet`), runs them through the discrete-event engine
(:mod:`planner.sim.engine`: continuous batching at iteration level on every replica, step times and
power from :mod:`planner.perf.model`, the model the profile table comes from) and reports
(:mod:`planner.sim.report`) latency percentiles, SLO attainment, energy, carbon, cost, utilization
and fairness next to the plan's own figures. Method and assumptions: docs/simulation.md.

The report is deterministic: the same plan, scenario, traces and options give the same bytes
(``timing`` aside).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from planner.errors import InputError, PlanFileError, Problem
from planner.limits import limits
from planner.plan.checker import base_key, read_plan
from planner.sim import engine as simengine
from planner.sim.arrivals import TraceSource, load_traces, poisson_arrivals, replay_traces
from planner.sim.fleet import plan_deployments, plan_routes, prefill_ms_vec, profiled_rates
from planner.sim.report import (
    DeploymentClass,
    DeploymentReport,
    Disruptions,
    FairnessReport,
    Figures,
    GroupReport,
    SimOptions,
    SimReport,
    SlotReport,
    Timing,
    attainment_of,
    fairness_of,
    percentiles_of,
    request_counts,
    sum_disruptions,
    sum_figures,
)

POLICIES = ("fcfs", "edf", "srtf", "llf")


PREDICTORS = ("class", "oracle")


TRACE_RATES = ("plan", "trace")


def parse_slots(text: str | None, n_slots: int) -> list[int]:
    """``"0-3,14"`` -> [0, 1, 2, 3, 14]; None -> every slot."""
    if text is None or not str(text).strip():
        return list(range(n_slots))
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
            else:
                a = b = int(part)
        except ValueError:
            raise InputError([Problem(f"--slots {text!r}", f"{part!r} is not a slot number or range a-b")],
                             "invalid --slots") from None
        if a > b or a < 0 or b >= n_slots:
            raise InputError([Problem(f"--slots {text!r}", f"{part!r} is outside 0-{n_slots - 1}")], "invalid --slots")
        out.update(range(a, b + 1))
    return sorted(out)


@dataclass
class _SlotResult:
    k: np.ndarray
    o: np.ndarray
    ttft: np.ndarray
    tbt: np.ndarray
    e2e: np.ndarray
    met: np.ndarray          # [4, n] bool: slo, ttft, tbt, e2e
    status: np.ndarray       # 0 completed, 1 unrouted, 2 too long


def _outages(plan, sc, t: int, deps, window_ms: float, rng, interruptions: float,
             late_starts: bool) -> tuple[dict[int, list[tuple[float, float]]], int, int]:
    """Replicas out of service in slot ``t``'s window: {global replica index: [(start_ms, end_ms)]}, the
    spot reclaims drawn and the replicas started late.

    * ``interruptions`` > 0: each spot VM is reclaimed as a Poisson process at ``interruptions`` x its
      offer's rate (reclaims per VM-hour), and its replicas are down for the offer's restart time
      (``spot_restart_s``, else the model's startup time). A deployment's replicas are packed into VMs of
      the largest spot VM type of its region and GPU the plan rents in the slot, ``gpus // (tp x pp)``
      per VM (a replica wider than a VM spans several, any of which takes it down).
    * ``late_starts``: the replicas the slot's actions start are down from the slot's start for their
      startup time, as if started at the boundary instead of ahead of it (the plan's assumption)."""
    down: dict[int, list[tuple[float, float]]] = {}
    first, acc = [], 0
    for d in deps:
        first.append(acc)
        acc += d.spec.replicas
    reclaims = late = 0
    by_id = {d.id: d for d in plan.slots[t].deployments}
    vo = sc.vm_offers
    if interruptions > 0 and vo is not None:
        rented = {(q.region, q.vm) for q in (plan.slots[t].vms or []) if q.market == "spot" and q.count > 0}
        for j, d in enumerate(deps):
            pd_ = by_id.get(d.id)
            if pd_ is None or pd_.market != "spot" or d.spec.replicas == 0:
                continue
            offers = vo[(vo["r"] == d.region) & (vo["g"] == d.gpu) & (vo["market"] == "spot")]
            used = offers[[(sc.regions[d.region], n) in rented for n in offers["name"]]]
            offers = used if len(used) else offers
            if not len(offers):
                continue
            o = offers.sort_values(["gpus", "name"]).iloc[-1]
            restart = float(o["restart_s"]) if np.isfinite(o["restart_s"]) else sc.startup_seconds(pd_.model)
            per_vm = max(1, int(o["gpus"]) // max(1, d.gpus))
            span = max(1, -(-d.gpus // int(o["gpus"])))   # VMs one replica spans
            rate_ms = float(o["rate"]) * interruptions * span / 3.6e6
            if rate_ms <= 0:
                continue
            for g0 in range(0, d.spec.replicas, per_vm):
                at = 0.0
                while True:
                    at += float(rng.exponential(1.0 / rate_ms))
                    if at >= window_ms:
                        break
                    reclaims += 1
                    for q in range(g0, min(g0 + per_vm, d.spec.replicas)):
                        down.setdefault(first[j] + q, []).append((at, at + restart * 1000.0))
    if late_starts and plan.slots[t].actions:
        started = {a.deployment: a.started for a in plan.slots[t].actions if a.started > 0}
        for j, d in enumerate(deps):
            pd_ = by_id.get(d.id)
            if pd_ is None:
                continue
            base = f"{pd_.region}/{base_key(pd_.model, pd_.gpu, pd_.tp, pd_.pp, pd_.market == 'spot')}"
            left = started.get(base, 0)
            if left <= 0:
                continue
            take = min(left, d.spec.replicas)
            started[base] = left - take
            ready = sc.startup_seconds(pd_.model) * 1000.0
            for q in range(d.spec.replicas - take, d.spec.replicas):
                down.setdefault(first[j] + q, []).append((0.0, ready))
            late += take
    return down, reclaims, late


def simulate(plan, scenario, *, traces: Sequence[TraceSource | str] | None = None, policy: str = "fcfs",
             seed: int = 0, slots: Sequence[int] | str | None = None, load_scale: float = 1.0,
             minutes: float | None = None, predict: str = "class", trace_rate: str = "plan",
             interruptions: float = 0.0, late_starts: bool = False) -> SimReport:
    """Simulate ``plan`` (a :class:`~planner.plan.schema.Plan`, a path or JSON text) on ``scenario`` (a loaded
    :class:`~planner.scenario.loading.Scenario`).

    ``traces``: trace files to replay (:class:`TraceSource` or ``"PATH[=CLASS,...]"``); None for Poisson
    arrivals at the planned rates. ``policy``: waiting-queue order on every replica (``fcfs``,
    ``edf``: TTFT deadline, ``srtf``: predicted service time, ``llf``: least laxity). ``predict``:
    output lengths the policies assume (``class``: the class's shape; ``oracle``: the true ones).
    ``slots``: which slots (list or ``"0-3,14"``; default all); ``minutes``: simulate the first
    ``minutes`` of each slot (default the whole slot); ``load_scale`` multiplies every arrival rate;
    ``trace_rate``: ``plan`` compresses each trace to the planned rate of its classes, ``trace`` keeps
    its own rate. ``interruptions``: inject spot reclaims at this multiple of the scenario's rates
    (seeded; 0: none); ``late_starts``: the replicas each slot's actions start serve only after their
    startup time (see :func:`_outages`). The report counts the requests they hit."""
    wall0 = time.perf_counter()
    plan = read_plan(plan)
    sc = scenario
    if plan.scenario.fingerprint != sc.fingerprint:
        raise PlanFileError([Problem("plan", f"it was made for a different scenario (plan fingerprint "
                                     f"{plan.scenario.fingerprint[:16]}..., scenario {sc.spec.name!r} has "
                                     f"{sc.fingerprint[:16]}...); simulate it with the scenario it was solved on")])
    if len(plan.slots) != sc.n_slots:
        raise PlanFileError([Problem("plan", f"has {len(plan.slots)} slots, the scenario {sc.n_slots}")])
    problems = []
    if policy not in POLICIES:
        problems.append(Problem("policy", f"must be one of {', '.join(POLICIES)}"))
    if predict not in PREDICTORS:
        problems.append(Problem("predict", f"must be one of {', '.join(PREDICTORS)}"))
    if trace_rate not in TRACE_RATES:
        problems.append(Problem("trace_rate", f"must be one of {', '.join(TRACE_RATES)}"))
    if not (isinstance(load_scale, (int, float)) and math.isfinite(load_scale) and load_scale > 0):
        problems.append(Problem("load_scale", "must be a positive number"))
    if not (isinstance(interruptions, (int, float)) and math.isfinite(interruptions) and 0 <= interruptions <= 1e4):
        problems.append(Problem("interruptions", "must be a number in [0, 10000] (a multiple of the scenario's rates)"))
    slot_min = sc.spec.horizon.slot_minutes
    if minutes is not None and not (math.isfinite(minutes) and 0 < minutes <= slot_min):
        problems.append(Problem("minutes", f"must be in (0, {slot_min}] (the slot length)"))
    if problems:
        raise InputError(problems, "invalid simulation options")
    slot_list = parse_slots(slots, sc.n_slots) if (slots is None or isinstance(slots, str)) else sorted(set(int(s) for s in slots))
    if any(s < 0 or s >= sc.n_slots for s in slot_list):
        raise InputError([Problem("slots", f"must be within 0-{sc.n_slots - 1}")], "invalid simulation options")
    window_min = float(minutes if minutes is not None else slot_min)
    window_ms = window_min * 60_000.0
    frac = window_min / slot_min

    lim = limits().max_sim_requests
    expected = float(sum(sc.demand[:, :, t].sum() for t in slot_list)) * window_ms / 1000.0 * load_scale
    if expected > lim:
        raise InputError([Problem("load_scale/minutes/slots", f"the run would generate about {expected:,.0f} requests, "
                                  f"above the limit of {lim:,} (PLANNER_MAX_SIM_REQUESTS): simulate fewer slots, "
                                  "fewer minutes or a smaller load scale, or raise the limit")],
                         "simulation too large")
    sources = [TraceSource.parse(s) if isinstance(s, str) else s for s in (traces or [])]
    loaded = load_traces(sources, sc) if sources else []
    notes: list[str] = []

    K, O = len(sc.classes), len(sc.origins)
    slo = sc.spec.classes
    ttft_slo = np.array([c.slo.ttft_ms for c in slo])
    tbt_slo = np.array([c.slo.tbt_ms for c in slo])
    e2e_slo = np.array([c.slo.e2e_ms if c.slo.e2e_ms is not None else np.inf for c in slo])
    shapes = {s.name: s for s in sc.spec.shapes}
    pred_out_cls = np.array([shapes[c.shape].output_tokens for c in slo], dtype=float)

    results: list[_SlotResult] = []
    slot_reports: list[SlotReport] = []
    dep_reports: list[DeploymentReport] = []
    max_rps = profiled_rates(sc)
    planned_rate = np.zeros((K, O))
    engine_s = 0.0
    events = 0
    n_total = 0
    for t in slot_list:
        deps = plan_deployments(plan, sc, t, max_rps)
        routes = plan_routes(plan, sc, t, deps)
        for (k, o), (_, p) in routes.items():
            planned_rate[k, o] += float(sc.demand[k, o, t]) * float(p.sum()) / len(slot_list)
        rng = np.random.default_rng([seed, t])
        if loaded:
            arr = replay_traces(loaded, sc, t, window_ms, load_scale, trace_rate, rng, notes)
        else:
            arr = poisson_arrivals(sc, t, window_ms, load_scale, rng)
        n = len(arr.t_ms)
        n_total += n
        # routing
        dep = np.full(n, -1, dtype=np.int64)
        for (k, o), (targets, p) in routes.items():
            sel = np.flatnonzero((arr.k == k) & (arr.o == o))
            if len(sel) == 0:
                continue
            u = rng.random(len(sel))
            j = np.searchsorted(np.cumsum(p), u, side="right")
            ok = j < len(targets)
            dep[sel[ok]] = targets[j[ok]]
        routed = dep >= 0
        region = np.array([d.region for d in deps], dtype=np.int64)
        rtt = np.zeros(n)
        if routed.any():
            rtt[routed] = sc.rtt[arr.o[routed], region[dep[routed]]]
        a_ms = arr.t_ms + rtt / 2.0
        # policy keys
        inp_eff = np.maximum(arr.inp, 1)
        out_eff = np.maximum(arr.out, 1)
        pred_out = out_eff.astype(float) if predict == "oracle" else pred_out_cls[arr.k]
        key = a_ms.copy()
        if policy != "fcfs":
            pre = np.zeros(n)
            tbt_pred = np.zeros(n)
            for j, d in enumerate(deps):
                sel = np.flatnonzero(dep == j)
                if len(sel):
                    pre[sel] = prefill_ms_vec(d.rm, inp_eff[sel])
                    tbt_pred[sel] = d.tbt[arr.k[sel]]
            deadline = a_ms + ttft_slo[arr.k] - rtt
            if policy == "edf":
                key = deadline
            elif policy == "srtf":
                key = pre + (pred_out - 1.0) * tbt_pred
            else:
                lax = deadline - pre
                e2e_dl = a_ms + e2e_slo[arr.k] - rtt - pre - (pred_out - 1.0) * tbt_pred
                key = np.minimum(lax, e2e_dl)
        order = np.flatnonzero(routed)
        order = order[np.argsort(a_ms[order], kind="stable")]
        down, n_reclaims, n_late = ({}, 0, 0)
        if interruptions > 0 or late_starts:
            down, n_reclaims, n_late = _outages(plan, sc, t, deps, window_ms, np.random.default_rng([seed, t, 7]),
                                                float(interruptions), bool(late_starts))
        e0 = time.perf_counter()
        res = simengine.run([d.spec for d in deps], a_ms[order], inp_eff[order], out_eff[order], dep[order],
                            key[order], seed=int(seed) * 1_000_003 + t, down=down or None)
        engine_s += time.perf_counter() - e0
        events += res.events
        first = np.full(n, np.nan)
        finish = np.full(n, np.nan)
        first[order] = res.first_ms
        finish[order] = res.finish_ms
        status = np.where(routed, 0, 1)
        served_idx = np.full(n, -1, dtype=np.int64)
        served_idx[order] = res.replica
        status[routed & (served_idx < 0)] = 2
        done = status == 0
        ttft = np.where(done, first - a_ms + rtt, np.nan)
        e2e = np.where(done, finish - a_ms + rtt, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            tbt = np.where(done & (out_eff > 1), (finish - first) / (out_eff - 1), np.nan)
        eps = 1e-9
        m_ttft = done & (ttft <= ttft_slo[arr.k] + eps)
        m_tbt = done & ((out_eff <= 1) | (tbt <= tbt_slo[arr.k] + eps))
        m_e2e = done & (e2e <= e2e_slo[arr.k] + eps)
        m_all = m_ttft & m_tbt & m_e2e
        results.append(_SlotResult(arr.k, arr.o, ttft, tbt, e2e, np.vstack([m_all, m_ttft, m_tbt, m_e2e]), status))
        disrupted = None
        if interruptions > 0 or late_starts:
            hit = np.zeros(n, dtype=bool)
            if res.hit is not None:
                hit[order] = res.hit
            disrupted = Disruptions(
                spot_reclaims=n_reclaims, late_replicas=n_late,
                down_replica_seconds=float(sum(min(b, window_ms) - a for spans in down.values() for a, b in spans
                                               if a < window_ms)) / 1000.0,
                requests_hit=int(hit.sum()), hit_met_slo=int((hit & m_all).sum()))

        # energy per replica and deployment
        slot_h = window_ms / 3.6e6
        ci = sc.carbon[:, t]
        price = sc.elec_price[:, t]
        sim_e = sim_c = sim_el = sim_gpu = 0.0
        nd = len(deps)
        admitted_per_dep = np.bincount(dep[served_idx >= 0], minlength=nd)
        done_per_dep_class = np.bincount(dep[done] * K + arr.k[done], minlength=nd * K).reshape(nd, K)
        routed_per_dep_class = np.bincount(dep[routed] * K + arr.k[routed], minlength=nd * K).reshape(nd, K)
        met_per_dep_class = np.bincount(dep[m_all] * K + arr.k[m_all], minlength=nd * K).reshape(nd, K)
        rep0 = 0
        for j, d in enumerate(deps):
            nr = d.spec.replicas
            sl = slice(rep0, rep0 + nr)
            rep0 += nr
            end_ms = np.maximum(window_ms, res.last_end_ms[sl])
            busy = res.busy_ms[sl]
            e_mj = float(np.sum(res.busy_energy_mj[sl] + d.rm.idle_w * (end_ms - busy)))
            it_kwh = e_mj / 3.6e9
            fac_kwh = it_kwh * sc.pue[d.region]
            sim_e += fac_kwh
            sim_c += fac_kwh * ci[d.region] / 1000.0
            sim_el += fac_kwh / 1000.0 * price[d.region]
            sim_gpu += nr * d.gpus * _gpu_price(sc, d) * slot_h
            nreq = int(admitted_per_dep[j])
            has_mu = np.isfinite(d.mu) & (np.nan_to_num(d.mu) > 0)
            load = float(np.sum(done_per_dep_class[j, has_mu] / d.mu[has_mu])) / (window_ms / 1000.0)
            busy_tot = float(busy.sum())
            dep_reports.append(DeploymentReport(
                slot=t, id=d.id, region=sc.regions[d.region], replicas=nr, requests=nreq,
                planned_utilization=d.planned_utilization, simulated_utilization=load / nr if nr else 0.0,
                busy_fraction=busy_tot / float(end_ms.sum()) if nr else 0.0,
                work_ratio=busy_tot / (nr * window_ms) if nr else 0.0,
                mean_batch=float(res.batch_ms[sl].sum()) / busy_tot if busy_tot > 0 else 0.0,
                planned_power_w=d.planned_power_w, simulated_power_w=e_mj / window_ms,
                drain_s=max(float(res.last_end_ms[sl].max(initial=0.0)) - window_ms, 0.0) / 1000.0,
                classes=[DeploymentClass(**{"class": sc.classes[k]}, requests=int(routed_per_dep_class[j, k]),
                                         met=int(met_per_dep_class[j, k]))
                         for k in range(K) if routed_per_dep_class[j, k] > 0]))
        st = plan.slots[t].totals
        if sc.vm_offers is None:
            gpu_cost_planned = sum(d.spec.replicas * d.gpus * float(sc.gpu_price[d.region, d.gpu])
                                   for d in deps) * sc.slot_hours
        else:  # whole VMs rented (their idle GPUs, restarts and starts are in the plan's other figures)
            price_of = {(row.region, row.name, row.market): row.price for row in sc.vm_offers.itertuples(index=False)}
            gpu_cost_planned = sum(q.count * price_of.get((q.region, q.vm, q.market), 0.0)
                                   for q in plan.slots[t].vms or []) * sc.slot_hours
            sim_gpu = gpu_cost_planned * frac  # the simulation runs the same VMs over its window
        planned = Figures(energy_kwh=st.energy_kwh * frac, carbon_kg=st.carbon_kg * frac, cost_usd=st.cost_usd * frac,
                          gpu_cost_usd=gpu_cost_planned * frac,
                          electricity_cost_usd=(st.cost_usd - gpu_cost_planned) * frac)
        simulated = Figures(energy_kwh=sim_e, carbon_kg=sim_c, cost_usd=sim_gpu + sim_el, gpu_cost_usd=sim_gpu,
                            electricity_cost_usd=sim_el)
        slot_reports.append(SlotReport(index=t, start=sc.slot_starts[t].strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       window_s=window_ms / 1000.0, requests=request_counts(status),
                                       attainment=attainment_of(results[-1].met, n, sc, arr.k), planned=planned,
                                       simulated=simulated, disruptions=disrupted))

    # aggregate
    k_all = np.concatenate([r.k for r in results]) if results else np.zeros(0, dtype=np.int64)
    o_all = np.concatenate([r.o for r in results]) if results else np.zeros(0, dtype=np.int64)
    status = np.concatenate([r.status for r in results]) if results else np.zeros(0, dtype=np.int64)
    met = np.hstack([r.met for r in results]) if results else np.zeros((4, 0), dtype=bool)
    ttft = np.concatenate([r.ttft for r in results]) if results else np.zeros(0)
    tbt = np.concatenate([r.tbt for r in results]) if results else np.zeros(0)
    e2e = np.concatenate([r.e2e for r in results]) if results else np.zeros(0)
    total_s = window_ms / 1000.0 * len(slot_list)
    groups = []
    for k in range(K):
        for o in range(O):
            sel = (k_all == k) & (o_all == o)
            n = int(sel.sum())
            if n == 0 and planned_rate[k, o] <= 0:
                continue
            st = status[sel]
            groups.append(GroupReport(**{
                "class": sc.classes[k]}, origin=sc.origins[o], requests=request_counts(st),
                planned_rps=float(planned_rate[k, o]), offered_rps=n / total_s,
                served_rps=float(np.sum(st == 0)) / total_s, attainment=attainment_of(met[:, sel], n, sc, k_all[sel]),
                ttft_ms=percentiles_of(ttft[sel]), tbt_ms=percentiles_of(tbt[sel]), e2e_ms=percentiles_of(e2e[sel])))
    fair = FairnessReport(
        groups=fairness_of({f"{g.class_}/{g.origin}": g.attainment.slo for g in groups if g.requests.arrived}),
        classes=fairness_of({sc.classes[k]: float(met[0, k_all == k].mean()) for k in range(K) if (k_all == k).any()}),
        origins=fairness_of({sc.origins[o]: float(met[0, o_all == o].mean()) for o in range(O) if (o_all == o).any()}))
    sum_fig = sum_figures
    demand_total = sum(float(sc.demand[:, :, t].sum()) for t in slot_list)
    planned_att = float(planned_rate.sum() * len(slot_list) / demand_total) if demand_total > 0 else 1.0
    if loaded and trace_rate == "trace":
        notes.append("trace_rate=trace: arrivals keep the traces' own rates, so offered and planned rates differ")
    wall = time.perf_counter() - wall0
    return SimReport(
        plan_objective=plan.objective.name, scenario=sc.spec.name,
        options=SimOptions(arrivals="trace" if loaded else "poisson", traces=[s.label() for s in sources],
                           trace_rate=trace_rate if loaded else None, policy=policy, predict=predict, seed=int(seed),
                           load_scale=float(load_scale), slots=slot_list, window_minutes=window_min,
                           interruptions=float(interruptions) if interruptions else None,
                           late_starts=True if late_starts else None),
        requests=request_counts(status), attainment=attainment_of(met, len(status), sc, k_all),
        planned_attainment=min(planned_att, 1.0),
        planned=sum_fig([s.planned for s in slot_reports]), simulated=sum_fig([s.simulated for s in slot_reports]),
        fairness=fair, groups=groups, slots=slot_reports, deployments=dep_reports, notes=notes,
        disruptions=(sum_disruptions([s.disruptions for s in slot_reports])
                     if (interruptions > 0 or late_starts) else None),
        timing=Timing(wall_seconds=wall, engine_seconds=engine_s,
                      requests_per_second=n_total / engine_s if engine_s > 0 else 0.0, events=events))


def _gpu_price(sc, d) -> float:
    """USD per GPU-hour of a simulated deployment's GPUs: the per-GPU price; 0 with VMs, where the slot's
    VM rental (from the plan's ``vms``) replaces the deployments' sum."""
    if sc.vm_offers is None:
        return float(sc.gpu_price[d.region, d.gpu])
    return 0.0
