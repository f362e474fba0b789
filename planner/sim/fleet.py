"""The plan's fleet as simulated entities: each deployment's replicas with the performance model at the
plan's clock, and each route's split over the region's deployments with its network delay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.errors import InputError, PlanFileError, Problem
from planner.perf.estimate import shape_targets
from planner.perf.model import CHUNK_TOKENS, MAX_NUM_SEQS, ReplicaModel, replica_model
from planner.perf.queueing import LengthMix, Targets
from planner.perf.queueing import capacity as queueing_capacity
from planner.plan.schema import Plan
from planner.scenario.schema import slo_statistic
from planner.sim import engine as simengine


@dataclass
class _Dep:
    id: str
    region: int
    gpu: int
    rm: ReplicaModel
    spec: simengine.DeploymentSpec
    planned_power_w: float
    planned_utilization: float
    gpus: int
    mu: np.ndarray                # [K] profiled max rate per replica (NaN: class not served here)
    tbt: np.ndarray               # [K] profiled TBT (0: class not served here)


def _replica(sc, d, t: int) -> ReplicaModel:
    try:
        return replica_model(d.model, d.gpu, d.tp, d.pp, d.freq_mhz)
    except InputError as e:
        raise InputError([Problem(f"plan slot {t}, deployment {d.id}",
                                  f"the performance model cannot simulate it: {e}")],
                         "cannot simulate this plan") from None


def _deployment_capacity(sc, rm: ReplicaModel, kc, sh):
    """The performance model's operating point for class ``kc`` on ``rm`` (its prefill chunk is the
    deployment's ``max_num_batched_tokens``): the representative pair's for a class stating no
    percentile, the length distribution's at the stated percentile otherwise (TTFT target less the
    scenario's smallest RTT, as ``plan profile estimate`` sizes rows by default)."""
    stat = slo_statistic(kc.slo)
    key = (sc.fingerprint, rm, kc.name)
    if stat is not None and key in _CAPACITY_CACHE:
        return _CAPACITY_CACHE[key]
    if stat is None:
        return rm.capacity(sh.input_tokens, sh.output_tokens, kc.slo.ttft_ms, kc.slo.tbt_ms, kc.slo.e2e_ms)
    ttft, tbt, e2e, _, _ = shape_targets(sc.spec)[kc.model][kc.shape]
    dist = sc.shape_distribution(kc.shape)
    mix = LengthMix.point(sh.input_tokens, sh.output_tokens) if dist is None else LengthMix.from_table(dist)
    cap = queueing_capacity(rm, mix, Targets(ttft, kc.slo.tbt_ms, e2e, stat, kc.slo.attainment))
    if len(_CAPACITY_CACHE) > 4096:
        _CAPACITY_CACHE.clear()
    _CAPACITY_CACHE[key] = cap
    return cap


_CAPACITY_CACHE: dict = {}


def profiled_rates(sc) -> dict[tuple, float]:
    """(model, gpu, tp, pp, freq_mhz, shape) -> max_rps of the scenario's profile table."""
    return {(r.model, r.gpu, int(r.tp), int(r.pp), float(r.freq_mhz), r.shape): float(r.max_rps)
            for r in sc.profiles.itertuples(index=False)}


def plan_deployments(plan: Plan, sc, t: int, max_rps: dict[tuple, float]) -> list[_Dep]:
    cls_index = {k: i for i, k in enumerate(sc.classes)}
    spec_cls = sc.spec.classes
    shapes = {s.name: s for s in sc.spec.shapes}
    reg = {r: i for i, r in enumerate(sc.regions)}
    gpu = {g: i for i, g in enumerate(sc.gpus)}
    out = []
    for d in plan.slots[t].deployments:
        if d.region not in reg or d.gpu not in gpu:
            raise PlanFileError([Problem(f"plan slot {t}, deployment {d.id}",
                                         f"region {d.region!r} or GPU {d.gpu!r} is not in the scenario")])
        rm = _replica(sc, d, t)
        chunk = CHUNK_TOKENS
        mu = np.full(len(spec_cls), np.nan)
        tbt = np.zeros(len(spec_cls))
        for cl in d.classes:
            k = cls_index.get(cl.class_)
            if k is None:
                raise PlanFileError([Problem(f"plan slot {t}, deployment {d.id}", f"unknown class {cl.class_!r}")])
            kc = spec_cls[k]
            sh = shapes[kc.shape]
            cap = _deployment_capacity(sc, rm, kc, sh)
            if cap is not None:
                chunk = min(chunk, cap.chunk_tokens)
            mu[k] = max_rps.get((d.model, d.gpu, d.tp, d.pp, float(d.freq_mhz), kc.shape), np.nan)
            tbt[k] = float(cl.tbt_ms)
        spec = simengine.DeploymentSpec(rm, int(d.replicas), int(chunk), MAX_NUM_SEQS, int(rm.kv_tokens))
        out.append(_Dep(d.id, reg[d.region], gpu[d.gpu], rm, spec, d.power_w, d.utilization,
                        int(d.tp * d.pp), mu, tbt))
    return out


def plan_routes(plan: Plan, sc, t: int, deps: list[_Dep]):
    """{(k, o): (target deployment indices, probabilities)}: the plan's shares of the planned demand."""
    ci = {k: i for i, k in enumerate(sc.classes)}
    oi = {o: i for i, o in enumerate(sc.origins)}
    di = {d.id: i for i, d in enumerate(deps)}
    acc: dict[tuple[int, int], list] = {}
    for r in plan.slots[t].routing:
        k, o = ci.get(r.class_), oi.get(r.origin)
        if k is None or o is None:
            raise PlanFileError([Problem(f"plan slot {t}, routing", f"unknown class/origin {r.class_!r}/{r.origin!r}")])
        for tg in r.targets:
            if tg.deployment not in di:
                raise PlanFileError([Problem(f"plan slot {t}, routing {r.class_}/{r.origin}",
                                             f"target {tg.deployment!r} is not a deployment of the slot")])
            acc.setdefault((k, o), []).append((di[tg.deployment], tg.rate_rps))
    out = {}
    for (k, o), lst in acc.items():
        lam = float(sc.demand[k, o, t])
        tot = sum(x for _, x in lst)
        denom = max(lam, tot)
        if denom <= 0:
            continue
        out[(k, o)] = (np.array([d for d, _ in lst], dtype=np.int64), np.array([x / denom for _, x in lst]))
    return out


def prefill_ms_vec(rm: ReplicaModel, inp: np.ndarray) -> np.ndarray:
    """:meth:`ReplicaModel.prefill_ms` for one prompt, vectorised."""
    x = inp.astype(float)
    return rm.oh0 + rm.oh1 + np.maximum(rm.pf_mem, rm.pf_lat1 * x + rm.pf_lat2 * x * x)
