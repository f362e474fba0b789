"""Verify a plan by simulation: replay traffic against the plan's fleet and measure what it delivers.

:func:`simulate` takes a plan and the scenario it was made for and, slot by slot, generates
requests (Poisson at the planned rates, or replayed traces), routes them by the plan's shares, runs
them through the discrete-event engine (:mod:`planner.simengine`: continuous batching at iteration
level on every replica, step times and power from :mod:`planner.perfmodel`, the model the profile
table comes from) and reports latency percentiles, SLO attainment, energy, carbon, cost,
utilization and fairness next to the plan's own figures. Method and assumptions:
docs/simulation.md.

The report is deterministic: the same plan, scenario, traces and options give the same bytes
(``timing`` aside).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import simengine
from .errors import InputError, PlanFileError, Problem
from .perfmodel import CHUNK_TOKENS, MAX_NUM_SEQS, ReplicaModel, replica_model
from .plan import Plan, _round

POLICIES = ("fcfs", "edf", "srtf", "llf")
PREDICTORS = ("class", "oracle")
TRACE_RATES = ("plan", "trace")
REPORT_SCHEMA_VERSION = "1.0"
TIMING_FIELDS = ("wall_seconds", "engine_seconds", "requests_per_second")

# ---------------------------------------------------------------------------------------------
# report schema


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class Percentiles(_Out):
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None


class Figures(_Out):
    """Energy, emissions and cost over the simulated windows."""

    energy_kwh: float
    """Facility energy (IT energy x PUE)."""
    carbon_kg: float
    cost_usd: float
    """GPU rental plus priced electricity."""
    gpu_cost_usd: float
    electricity_cost_usd: float


class Requests(_Out):
    arrived: int
    completed: int
    dropped_unrouted: int
    """The plan serves no part of this traffic (planned unserved demand, or no route in the slot)."""
    dropped_too_long: int
    """Prompt + output exceed the KV-cache room of the replica the request was sent to."""


class Attainment(_Out):
    """Share of arrived requests meeting each target (dropped requests miss every target)."""

    slo: float | None
    """All of the class's targets: TTFT, TBT and (when set) end-to-end."""
    ttft: float | None
    tbt: float | None
    e2e: float | None


class GroupReport(_Out):
    class_: str = Field(alias="class")
    origin: str
    requests: Requests
    planned_rps: float
    """Rate the plan serves, mean over the simulated windows."""
    offered_rps: float
    """Rate that arrived in the simulation (load scale and trace included)."""
    served_rps: float
    attainment: Attainment
    ttft_ms: Percentiles
    """Time to first token seen by the user: network RTT + queueing + prefill."""
    tbt_ms: Percentiles
    """Per request mean time between tokens, (last − first token) / (output − 1)."""
    e2e_ms: Percentiles


class Fairness(_Out):
    jain: float | None
    """Jain's index of SLO attainment, (Σx)² / (n Σx²): 1 when all equal, 1/n when one gets everything."""
    gap: float | None
    """Largest difference in SLO attainment."""
    best: str | None
    worst: str | None


class FairnessReport(_Out):
    groups: Fairness
    """Across (class, origin) pairs with traffic."""
    classes: Fairness
    origins: Fairness


class DeploymentReport(_Out):
    slot: int
    id: str
    region: str
    replicas: int
    requests: int
    planned_utilization: float
    simulated_utilization: float
    """Completed load as a fraction of the replicas' profiled maximum: Σ_k served_k / (mu_k x replicas)."""
    busy_fraction: float
    """Share of replica time spent running engine steps (window plus drain)."""
    mean_batch: float
    """Mean sequences per step while busy."""
    planned_power_w: float
    simulated_power_w: float
    """Mean IT power over the window (work that drains after the window end included)."""
    drain_s: float
    """How long after the window end its last request finished (0 if none ran over)."""


class SlotReport(_Out):
    index: int
    start: str
    window_s: float
    requests: Requests
    attainment: Attainment
    planned: Figures
    simulated: Figures


class SimOptions(_Out):
    arrivals: Literal["poisson", "trace"]
    traces: list[str]
    """Trace files, each with the classes its requests may take."""
    trace_rate: Literal["plan", "trace"] | None
    policy: Literal["fcfs", "edf", "srtf", "llf"]
    predict: Literal["class", "oracle"]
    seed: int
    load_scale: float
    slots: list[int]
    window_minutes: float


class Timing(_Out):
    wall_seconds: float
    engine_seconds: float
    requests_per_second: float
    """Simulated requests per second of engine time."""
    events: int


class SimReport(_Out):
    """What a plan delivers when its traffic is simulated, next to what it promised."""

    schema_version: Literal["1.0"] = REPORT_SCHEMA_VERSION
    plan_objective: str
    scenario: str
    options: SimOptions
    requests: Requests
    attainment: Attainment
    planned_attainment: float
    """Share of the offered traffic the plan serves (it promises that every served request meets its SLO)."""
    planned: Figures
    """The plan's figures pro-rated to the simulated windows."""
    simulated: Figures
    fairness: FairnessReport
    groups: list[GroupReport]
    slots: list[SlotReport]
    deployments: list[DeploymentReport]
    notes: list[str]
    timing: Timing

    def to_json(self) -> str:
        data = _round(self.model_dump(mode="json", by_alias=True))
        return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def without_timings(self) -> dict:
        d = json.loads(self.to_json())
        d.pop("timing", None)
        return d


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class TraceSource:
    """A trace file to replay and the classes its requests may take (None: every class)."""

    path: str
    classes: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> "TraceSource":
        """``PATH`` or ``PATH=CLASS[,CLASS...]``."""
        if "=" in text and not Path(text).exists():
            path, _, rest = text.rpartition("=")
            names = tuple(c.strip() for c in rest.split(",") if c.strip())
            if not path or not names:
                raise InputError([Problem(repr(text), "expected PATH or PATH=CLASS[,CLASS...]")], "invalid --trace")
            return cls(path, names)
        return cls(text, None)

    def label(self) -> str:
        return self.path + ("" if self.classes is None else "=" + ",".join(self.classes))


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


# ---------------------------------------------------------------------------------------------
# per-slot setup


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


def _profiled_rates(sc) -> dict[tuple, float]:
    """(model, gpu, tp, pp, freq_mhz, shape) -> max_rps of the scenario's profile table."""
    return {(r.model, r.gpu, int(r.tp), int(r.pp), float(r.freq_mhz), r.shape): float(r.max_rps)
            for r in sc.profiles.itertuples(index=False)}


def _deployments(plan: Plan, sc, t: int, max_rps: dict[tuple, float]) -> list[_Dep]:
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
            cap = rm.capacity(sh.input_tokens, sh.output_tokens, kc.slo.ttft_ms, kc.slo.tbt_ms, kc.slo.e2e_ms)
            if cap is not None:
                chunk = min(chunk, cap.chunk_tokens)
            mu[k] = max_rps.get((d.model, d.gpu, d.tp, d.pp, float(d.freq_mhz), kc.shape), np.nan)
            tbt[k] = float(cl.tbt_ms)
        kv = int(rm.kv_budget_bytes // rm.kv_bytes_per_token) if rm.kv_bytes_per_token > 0 else 0
        spec = simengine.DeploymentSpec(rm, int(d.replicas), int(chunk), MAX_NUM_SEQS, kv)
        out.append(_Dep(d.id, reg[d.region], gpu[d.gpu], rm, spec, d.power_w, d.utilization,
                        int(d.tp * d.pp), mu, tbt))
    return out


def _routes(plan: Plan, sc, t: int, deps: list[_Dep]):
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


# ---------------------------------------------------------------------------------------------
# arrivals


@dataclass
class _Arrivals:
    t_ms: np.ndarray     # send time at the origin
    k: np.ndarray
    o: np.ndarray
    inp: np.ndarray
    out: np.ndarray


def _poisson(sc, t: int, window_ms: float, scale: float, rng: np.random.Generator) -> _Arrivals:
    parts = []
    shapes = {s.name: s for s in sc.spec.shapes}
    for k, kc in enumerate(sc.spec.classes):
        sh = shapes[kc.shape]
        for o in range(len(sc.origins)):
            lam = float(sc.demand[k, o, t]) * scale
            if lam <= 0:
                continue
            n = int(rng.poisson(lam * window_ms / 1000.0))
            if n == 0:
                continue
            ts = np.sort(rng.uniform(0.0, window_ms, n))
            parts.append((ts, k, o, sh.input_tokens, sh.output_tokens))
    return _concat([(ts, np.full(len(ts), k), np.full(len(ts), o), np.full(len(ts), i), np.full(len(ts), u))
                    for ts, k, o, i, u in parts])


def _concat(parts) -> _Arrivals:
    if not parts:
        e = np.zeros(0)
        ei = np.zeros(0, dtype=np.int64)
        return _Arrivals(e, ei, ei, ei, ei)
    t = np.concatenate([p[0] for p in parts])
    order = np.argsort(t, kind="stable")
    cols = [np.concatenate([p[j] for p in parts]).astype(np.int64) for j in range(1, 5)]
    return _Arrivals(t[order], *(c[order] for c in cols))


@dataclass
class _LoadedTrace:
    source: TraceSource
    t: np.ndarray          # seconds since the first request
    inp: np.ndarray
    out: np.ndarray
    k: np.ndarray | None   # class index per request (trace column), else None
    o: np.ndarray | None
    allowed: list[int]
    duration_s: float


def _load_traces(sources: Sequence[TraceSource], sc) -> list[_LoadedTrace]:
    from .datatools import load_trace

    ci = {k: i for i, k in enumerate(sc.classes)}
    oi = {o: i for i, o in enumerate(sc.origins)}
    out = []
    for src in sources:
        if src.classes is not None:
            bad = [c for c in src.classes if c not in ci]
            if bad:
                raise InputError([Problem(f"--trace {src.label()}", f"unknown class(es) {', '.join(bad)}; "
                                          f"the scenario has {', '.join(sc.classes)}")], "invalid --trace")
            allowed = sorted({ci[c] for c in src.classes})
        else:
            allowed = list(range(len(sc.classes)))
        tr = load_trace(src.path)
        df = tr.df
        keep = np.ones(len(df), dtype=bool)
        k = o = None
        if "class" in df.columns:
            k = _name_column(df, "class", ci, src.path)
            keep &= np.isin(k, allowed)
        if "origin" in df.columns:
            o = _name_column(df, "origin", oi, src.path)
        t = df["t"].to_numpy(dtype=float)[keep]
        if len(t) < 2 or t[-1] <= t[0]:
            raise InputError([Problem(src.path, "a trace to replay needs at least two requests at different times"
                                      + ("" if keep.all() else " of the classes given"))], "invalid trace")
        n = len(t)
        span = float(t[-1] - t[0])
        out.append(_LoadedTrace(src, t - t[0], df["input_tokens"].to_numpy(dtype=np.int64)[keep],
                                df["output_tokens"].to_numpy(dtype=np.int64)[keep],
                                None if k is None else k[keep], None if o is None else o[keep], allowed,
                                span * n / (n - 1)))
    return out


def _name_column(df, col: str, index: dict[str, int], path: str) -> np.ndarray:
    """Indices of the scenario names in trace column ``col``; an unknown name is an error naming the line."""
    names = df[col].astype(str).str.strip()
    unknown = ~names.isin(list(index))
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError([Problem(f"{path}: line {int(df['line'].iloc[i])}, column {col!r}",
                                  f"unknown {col} {names.iloc[i]!r}; the scenario has {', '.join(index)}")])
    return names.map(index).to_numpy(dtype=np.int64)


def _replay(trs: list[_LoadedTrace], sc, t: int, window_ms: float, scale: float, rate: str,
            rng: np.random.Generator, notes: list[str]) -> _Arrivals:
    """Tile each trace over the window, compressed so its rate is the planned rate of its classes
    (``rate="plan"``) or its own (``"trace"``), times ``scale``; give requests classes and origins."""
    shapes = {s.name: s for s in sc.spec.shapes}
    parts = []
    for tr in trs:
        n = len(tr.t)
        own_rate = n / tr.duration_s
        if rate == "plan":
            target = float(sc.demand[tr.allowed, :, t].sum()) * scale
            if target <= 0:
                notes.append(f"slot {t}: the plan has no demand for the classes of {tr.source.label()}; not replayed")
                continue
            f = target / own_rate
        else:
            f = scale
        period_ms = tr.duration_s / f * 1000.0
        base_ms = tr.t / f * 1000.0
        copies = int(math.ceil(window_ms / period_ms))
        if copies * n > 50_000_000:
            raise InputError([Problem(f"--trace {tr.source.label()}", f"slot {t} would replay {copies * n:,} requests; "
                                      "shorten --minutes or lower --load-scale")], "trace replay too large")
        ts = (np.arange(copies)[:, None] * period_ms + base_ms[None, :]).ravel()
        sel = ts < window_ms
        ts = ts[sel]
        idx = np.tile(np.arange(n), copies)[sel]
        inp, out = tr.inp[idx], tr.out[idx]
        # classes
        if tr.k is not None:
            k = tr.k[idx]
        else:
            k = _assign_classes(tr, sc, t, shapes, rng, idx)
        if tr.o is not None:
            o = tr.o[idx]
        else:
            o = _assign_origins(sc, t, k, rng)
        parts.append((ts, k, o, inp, out))
    return _concat(parts)


def _assign_classes(tr: _LoadedTrace, sc, t: int, shapes, rng, idx) -> np.ndarray:
    """Rank matching: the trace's requests ranked by (output, input) tokens are cut into bands, one per
    shape of the allowed classes (ordered by the shape's output, then input tokens), each band as wide
    as its classes' share of the planned demand; classes sharing a shape split their band at random
    in proportion to their demand. Without demand in the slot, classes share equally."""
    rates = sc.demand[:, :, t].sum(axis=1)
    cls = tr.allowed
    w = np.array([rates[k] for k in cls], dtype=float)
    if w.sum() <= 0:
        w = np.ones(len(cls))
    groups: dict[str, list[int]] = {}
    for j, k in enumerate(cls):
        groups.setdefault(sc.spec.classes[k].shape, []).append(j)
    order = sorted(groups, key=lambda s: (shapes[s].output_tokens, shapes[s].input_tokens, s))
    n = len(tr.t)
    rank = np.empty(n, dtype=float)
    rank[np.lexsort((np.arange(n), tr.inp, tr.out))] = (np.arange(n) + 0.5) / n
    gw = np.array([w[groups[s]].sum() for s in order]) / w.sum()
    bounds = np.cumsum(gw)
    band = np.minimum(np.searchsorted(bounds, rank, side="right"), len(order) - 1)[idx]
    k = np.empty(len(idx), dtype=np.int64)
    for g, s in enumerate(order):
        sel = np.flatnonzero(band == g)
        members = groups[s]
        if len(members) == 1:
            k[sel] = cls[members[0]]
        else:
            p = w[members] / w[members].sum() if w[members].sum() > 0 else np.full(len(members), 1 / len(members))
            pick = rng.choice(len(members), size=len(sel), p=p)
            k[sel] = np.array([cls[m] for m in members])[pick]
    return k


def _assign_origins(sc, t: int, k: np.ndarray, rng) -> np.ndarray:
    o = np.zeros(len(k), dtype=np.int64)
    n_o = len(sc.origins)
    for kk in np.unique(k):
        sel = np.flatnonzero(k == kk)
        w = sc.demand[kk, :, t].astype(float)
        p = w / w.sum() if w.sum() > 0 else np.full(n_o, 1.0 / n_o)
        o[sel] = rng.choice(n_o, size=len(sel), p=p)
    return o


# ---------------------------------------------------------------------------------------------
# simulation


@dataclass
class _SlotResult:
    k: np.ndarray
    o: np.ndarray
    ttft: np.ndarray
    tbt: np.ndarray
    e2e: np.ndarray
    met: np.ndarray          # [4, n] bool: slo, ttft, tbt, e2e
    status: np.ndarray       # 0 completed, 1 unrouted, 2 too long


def _prefill_ms(rm: ReplicaModel, inp: np.ndarray) -> np.ndarray:
    """:meth:`ReplicaModel.prefill_ms` for one prompt, vectorised."""
    x = inp.astype(float)
    return rm.oh0 + rm.oh1 + np.maximum(rm.pf_mem, rm.pf_lat1 * x + rm.pf_lat2 * x * x)


def simulate(plan, scenario, *, traces: Sequence[TraceSource | str] | None = None, policy: str = "fcfs",
             seed: int = 0, slots: Sequence[int] | str | None = None, load_scale: float = 1.0,
             minutes: float | None = None, predict: str = "class", trace_rate: str = "plan") -> SimReport:
    """Simulate ``plan`` (a :class:`~planner.plan.Plan`, a path or JSON text) on ``scenario`` (a loaded
    :class:`~planner.loading.Scenario`).

    ``traces``: trace files to replay (:class:`TraceSource` or ``"PATH[=CLASS,...]"``); None for Poisson
    arrivals at the planned rates. ``policy``: waiting-queue order on every replica (``fcfs``,
    ``edf``: TTFT deadline, ``srtf``: predicted service time, ``llf``: least laxity). ``predict``:
    output lengths the policies assume (``class``: the class's shape; ``oracle``: the true ones).
    ``slots``: which slots (list or ``"0-3,14"``; default all); ``minutes``: simulate the first
    ``minutes`` of each slot (default the whole slot); ``load_scale`` multiplies every arrival rate;
    ``trace_rate``: ``plan`` compresses each trace to the planned rate of its classes, ``trace`` keeps
    its own rate."""
    from .checker import read_plan

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
    from .limits import limits

    lim = limits().max_sim_requests
    expected = float(sum(sc.demand[:, :, t].sum() for t in slot_list)) * window_ms / 1000.0 * load_scale
    if expected > lim:
        raise InputError([Problem("load_scale/minutes/slots", f"the run would generate about {expected:,.0f} requests, "
                                  f"above the limit of {lim:,} (PLANNER_MAX_SIM_REQUESTS): simulate fewer slots, "
                                  "fewer minutes or a smaller load scale, or raise the limit")],
                         "simulation too large")
    sources = [TraceSource.parse(s) if isinstance(s, str) else s for s in (traces or [])]
    loaded = _load_traces(sources, sc) if sources else []
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
    max_rps = _profiled_rates(sc)
    planned_rate = np.zeros((K, O))
    engine_s = 0.0
    events = 0
    n_total = 0
    for t in slot_list:
        deps = _deployments(plan, sc, t, max_rps)
        routes = _routes(plan, sc, t, deps)
        for (k, o), (_, p) in routes.items():
            planned_rate[k, o] += float(sc.demand[k, o, t]) * float(p.sum()) / len(slot_list)
        rng = np.random.default_rng([seed, t])
        if loaded:
            arr = _replay(loaded, sc, t, window_ms, load_scale, trace_rate, rng, notes)
        else:
            arr = _poisson(sc, t, window_ms, load_scale, rng)
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
                    pre[sel] = _prefill_ms(d.rm, inp_eff[sel])
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
        e0 = time.perf_counter()
        res = simengine.run([d.spec for d in deps], a_ms[order], inp_eff[order], out_eff[order], dep[order],
                            key[order], seed=int(seed) * 1_000_003 + t)
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

        # energy per replica and deployment
        slot_h = window_ms / 3.6e6
        ci = sc.carbon[:, t]
        price = sc.elec_price[:, t]
        sim_e = sim_c = sim_el = sim_gpu = 0.0
        nd = len(deps)
        admitted_per_dep = np.bincount(dep[served_idx >= 0], minlength=nd)
        done_per_dep_class = np.bincount(dep[done] * K + arr.k[done], minlength=nd * K).reshape(nd, K)
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
            sim_gpu += nr * d.gpus * float(sc.gpu_price[d.region, d.gpu]) * slot_h
            nreq = int(admitted_per_dep[j])
            has_mu = np.isfinite(d.mu) & (np.nan_to_num(d.mu) > 0)
            load = float(np.sum(done_per_dep_class[j, has_mu] / d.mu[has_mu])) / (window_ms / 1000.0)
            busy_tot = float(busy.sum())
            dep_reports.append(DeploymentReport(
                slot=t, id=d.id, region=sc.regions[d.region], replicas=nr, requests=nreq,
                planned_utilization=d.planned_utilization, simulated_utilization=load / nr if nr else 0.0,
                busy_fraction=busy_tot / float(end_ms.sum()) if nr else 0.0,
                mean_batch=float(res.batch_ms[sl].sum()) / busy_tot if busy_tot > 0 else 0.0,
                planned_power_w=d.planned_power_w, simulated_power_w=e_mj / window_ms,
                drain_s=max(float(res.last_end_ms[sl].max(initial=0.0)) - window_ms, 0.0) / 1000.0))
        st = plan.slots[t].totals
        gpu_cost_planned = sum(d.spec.replicas * d.gpus * float(sc.gpu_price[d.region, d.gpu])
                               for d in deps) * sc.slot_hours
        planned = Figures(energy_kwh=st.energy_kwh * frac, carbon_kg=st.carbon_kg * frac, cost_usd=st.cost_usd * frac,
                          gpu_cost_usd=gpu_cost_planned * frac,
                          electricity_cost_usd=(st.cost_usd - gpu_cost_planned) * frac)
        simulated = Figures(energy_kwh=sim_e, carbon_kg=sim_c, cost_usd=sim_gpu + sim_el, gpu_cost_usd=sim_gpu,
                            electricity_cost_usd=sim_el)
        slot_reports.append(SlotReport(index=t, start=sc.slot_starts[t].strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       window_s=window_ms / 1000.0, requests=_requests(status),
                                       attainment=_attain(results[-1].met, n, sc, arr.k), planned=planned,
                                       simulated=simulated))

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
                "class": sc.classes[k]}, origin=sc.origins[o], requests=_requests(st),
                planned_rps=float(planned_rate[k, o]), offered_rps=n / total_s,
                served_rps=float(np.sum(st == 0)) / total_s, attainment=_attain(met[:, sel], n, sc, k_all[sel]),
                ttft_ms=_pct(ttft[sel]), tbt_ms=_pct(tbt[sel]), e2e_ms=_pct(e2e[sel])))
    fair = FairnessReport(
        groups=_fairness({f"{g.class_}/{g.origin}": g.attainment.slo for g in groups if g.requests.arrived}),
        classes=_fairness({sc.classes[k]: float(met[0, k_all == k].mean()) for k in range(K) if (k_all == k).any()}),
        origins=_fairness({sc.origins[o]: float(met[0, o_all == o].mean()) for o in range(O) if (o_all == o).any()}))
    sum_fig = _sum_figures
    demand_total = sum(float(sc.demand[:, :, t].sum()) for t in slot_list)
    planned_att = float(planned_rate.sum() * len(slot_list) / demand_total) if demand_total > 0 else 1.0
    if loaded and trace_rate == "trace":
        notes.append("trace_rate=trace: arrivals keep the traces' own rates, so offered and planned rates differ")
    wall = time.perf_counter() - wall0
    return SimReport(
        plan_objective=plan.objective.name, scenario=sc.spec.name,
        options=SimOptions(arrivals="trace" if loaded else "poisson", traces=[s.label() for s in sources],
                           trace_rate=trace_rate if loaded else None, policy=policy, predict=predict, seed=int(seed),
                           load_scale=float(load_scale), slots=slot_list, window_minutes=window_min),
        requests=_requests(status), attainment=_attain(met, len(status), sc, k_all),
        planned_attainment=min(planned_att, 1.0),
        planned=sum_fig([s.planned for s in slot_reports]), simulated=sum_fig([s.simulated for s in slot_reports]),
        fairness=fair, groups=groups, slots=slot_reports, deployments=dep_reports, notes=notes,
        timing=Timing(wall_seconds=wall, engine_seconds=engine_s,
                      requests_per_second=n_total / engine_s if engine_s > 0 else 0.0, events=events))


def _requests(status: np.ndarray) -> Requests:
    return Requests(arrived=int(len(status)), completed=int(np.sum(status == 0)),
                    dropped_unrouted=int(np.sum(status == 1)), dropped_too_long=int(np.sum(status == 2)))


def _attain(met: np.ndarray, n: int, sc, k: np.ndarray) -> Attainment:
    if n == 0:
        return Attainment(slo=None, ttft=None, tbt=None, e2e=None)
    has_e2e = np.array([c.slo.e2e_ms is not None for c in sc.spec.classes])[k]
    return Attainment(slo=float(met[0].mean()), ttft=float(met[1].mean()), tbt=float(met[2].mean()),
                      e2e=float(met[3][has_e2e].mean()) if has_e2e.any() else None)


def _pct(x: np.ndarray) -> Percentiles:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Percentiles(p50=None, p90=None, p99=None, mean=None)
    p = np.percentile(x, [50, 90, 99])
    return Percentiles(p50=float(p[0]), p90=float(p[1]), p99=float(p[2]), mean=float(x.mean()))


def _fairness(values: dict[str, float | None]) -> Fairness:
    v = {k: x for k, x in values.items() if x is not None}
    if not v:
        return Fairness(jain=None, gap=None, best=None, worst=None)
    x = np.array(list(v.values()))
    sq = float(np.sum(x * x))
    jain = float(x.sum() ** 2 / (len(x) * sq)) if sq > 0 else 1.0
    names = list(v)
    best = names[int(np.argmax(x))]
    worst = names[int(np.argmin(x))]
    return Fairness(jain=jain, gap=float(x.max() - x.min()), best=best, worst=worst)


def _sum_figures(figs: list[Figures]) -> Figures:
    keys = Figures.model_fields
    return Figures(**{f: float(sum(getattr(x, f) for x in figs)) for f in keys})


# ---------------------------------------------------------------------------------------------
# readable report


def _f(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def _pc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _delta(a: float, b: float) -> str:
    return "-" if a == 0 else f"{100 * (b - a) / a:+.1f}%"


def render_report(rep: SimReport, max_deployments: int = 20):
    """The report as rich tables: planned vs simulated, per (class, origin), fairness, deployments."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    o = rep.options
    src = ("Poisson at the planned rates" if o.arrivals == "poisson"
           else f"trace replay ({'; '.join(o.traces)}; rate: {o.trace_rate})")
    head = Text(f"Simulated {rep.scenario} ({rep.plan_objective} plan): {src}; policy {o.policy}, "
                f"load x{o.load_scale:g}, {len(o.slots)} slot(s) x {o.window_minutes:g} min, seed {o.seed}. "
                f"{rep.requests.arrived:,} requests, {rep.requests.completed:,} completed, "
                f"{rep.requests.dropped_unrouted:,} unrouted, {rep.requests.dropped_too_long:,} too long.")
    t1 = Table(title="Planned vs simulated", title_justify="left")
    for c in ("", "planned", "simulated", "difference"):
        t1.add_column(c, justify="right" if c else "left")
    t1.add_row("SLO attainment", _pc(rep.planned_attainment), _pc(rep.attainment.slo),
               "-" if rep.attainment.slo is None else f"{100 * (rep.attainment.slo - rep.planned_attainment):+.1f} pt")
    for name, f, unit in (("energy", "energy_kwh", "kWh"), ("carbon", "carbon_kg", "kgCO2e"), ("cost", "cost_usd", "USD")):
        a, b = getattr(rep.planned, f), getattr(rep.simulated, f)
        t1.add_row(f"{name} ({unit})", f"{a:,.4g}", f"{b:,.4g}", _delta(a, b))
    t2 = Table(title="Per class and origin (latencies in ms, TTFT and e2e include the network RTT)", title_justify="left")
    for c in ("class", "origin", "planned rps", "offered rps", "SLO", "TTFT", "TBT", "e2e", "TTFT p50", "TTFT p99",
              "TBT p50", "TBT p99", "e2e p99"):
        t2.add_column(c, justify="left" if c in ("class", "origin") else "right")
    for g in rep.groups:
        a = g.attainment
        t2.add_row(g.class_, g.origin, _f(g.planned_rps, ".4g"), _f(g.offered_rps, ".4g"), _pc(a.slo), _pc(a.ttft),
                   _pc(a.tbt), _pc(a.e2e), _f(g.ttft_ms.p50, ".0f"), _f(g.ttft_ms.p99, ".0f"), _f(g.tbt_ms.p50, ".1f"),
                   _f(g.tbt_ms.p99, ".1f"), _f(g.e2e_ms.p99, ".0f"))
    fr = rep.fairness
    fair = Text("Fairness of SLO attainment (Jain's index, largest gap): " + "; ".join(
        f"{name} {_f(x.jain, '.3f')}, gap {_pc(x.gap)} ({x.worst} worst)" for name, x in
        (("class/origin", fr.groups), ("classes", fr.classes), ("origins", fr.origins)) if x.jain is not None))
    # deployments aggregated over slots
    agg: dict[str, dict] = {}
    for d in rep.deployments:
        a = agg.setdefault(d.id, dict(rs=0, pu=0.0, su=0.0, bf=0.0, pw=0.0, sw=0.0, req=0, n=0))
        a["rs"] += d.replicas
        a["pu"] += d.planned_utilization * d.replicas
        a["su"] += d.simulated_utilization * d.replicas
        a["bf"] += d.busy_fraction * d.replicas
        a["pw"] += d.planned_power_w
        a["sw"] += d.simulated_power_w
        a["req"] += d.requests
        a["n"] += 1
    ids = sorted(agg, key=lambda i: (-agg[i]["req"], i))
    t3 = Table(title=f"Deployments (mean over simulated slots; {min(len(ids), max_deployments)} of {len(ids)} "
                     "with the most requests)", title_justify="left")
    for c in ("deployment", "replicas", "util planned", "util sim", "busy", "power planned W", "power sim W", "diff"):
        t3.add_column(c, justify="left" if c == "deployment" else "right")
    for i in ids[:max_deployments]:
        a = agg[i]
        rs = max(a["rs"], 1)
        t3.add_row(i, f"{a['rs'] / a['n']:.3g}", _pc(a["pu"] / rs), _pc(a["su"] / rs), _pc(a["bf"] / rs),
                   f"{a['pw'] / a['n']:,.0f}", f"{a['sw'] / a['n']:,.0f}", _delta(a["pw"], a["sw"]))
    parts = [head, t1, t2, fair, t3]
    if rep.notes:
        parts.append(Text("Notes: " + " ".join(rep.notes)))
    parts.append(Text(f"{rep.timing.requests_per_second:,.0f} requests/s simulated ({rep.timing.events:,} events, "
                      f"engine {rep.timing.engine_seconds:.1f} s, total {rep.timing.wall_seconds:.1f} s)."))
    return Group(*parts)
