"""The simulation report: its schema (per class and origin, per deployment, per slot, fairness), the
metrics computed from simulated requests, and the tables :func:`render_report` prints."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.plan.schema import round_floats

REPORT_SCHEMA_VERSION = "1.0"


TIMING_FIELDS = ("wall_seconds", "engine_seconds", "requests_per_second")


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


class DeploymentClass(_Out):
    class_: str = Field(alias="class")
    requests: int
    """Requests of the class routed to this deployment in the window."""
    met: int
    """How many of them met every SLO of the class (RTT included)."""


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
    work_ratio: float = 0.0
    """Engine time the window's requests needed (window and drain) / (replicas x window): the
    offered utilisation; above 1 the deployment cannot keep up with its traffic."""
    mean_batch: float
    """Mean sequences per step while busy."""
    planned_power_w: float
    simulated_power_w: float
    """Mean IT power over the window (work that drains after the window end included)."""
    drain_s: float
    """How long after the window end its last request finished (0 if none ran over)."""
    classes: list[DeploymentClass] = []
    """Per class routed here: requests and how many met every SLO (what ``--verify`` derates by)."""


class Disruptions(_Out):
    """Replicas out of service during the simulated windows (``plan simulate --interruptions`` /
    ``--late-starts``) and the requests they hit."""

    spot_reclaims: int
    """Spot VM reclaims drawn (seeded Poisson, at the scenario's rates times ``interruptions``)."""
    late_replicas: int
    """Replicas started at the slot's start that served only after their startup time."""
    down_replica_seconds: float
    """Replica-seconds out of service within the windows."""
    requests_hit: int
    """Requests waiting or running on a replica when it went down (each started again elsewhere)."""
    hit_met_slo: int
    """Of those, the ones that still met their SLO."""


class SlotReport(_Out):
    index: int
    start: str
    window_s: float
    requests: Requests
    attainment: Attainment
    planned: Figures
    simulated: Figures
    disruptions: Disruptions | None = None


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
    interruptions: float | None = None
    """Spot reclaims injected at this multiple of the scenario's rates (None: none)."""
    late_starts: bool | None = None
    """Whether started replicas served only after their startup time (None: started ahead, as planned)."""


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
    disruptions: Disruptions | None = None
    """With injected interruptions or late starts: their totals over the simulated slots."""

    def to_json(self) -> str:
        data = round_floats(self.model_dump(mode="json", by_alias=True))
        # the disruption fields appear only when the run injected some (reports without them are unchanged)
        for scope in [data, data["options"], *data["slots"]]:
            for key in ("disruptions", "interruptions", "late_starts"):
                if key in scope and scope[key] is None:
                    del scope[key]
        return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def without_timings(self) -> dict:
        d = json.loads(self.to_json())
        d.pop("timing", None)
        return d


def sum_disruptions(items) -> Disruptions:
    items = [d for d in items if d is not None]
    return Disruptions(spot_reclaims=sum(d.spot_reclaims for d in items), late_replicas=sum(d.late_replicas for d in items),
                       down_replica_seconds=sum(d.down_replica_seconds for d in items),
                       requests_hit=sum(d.requests_hit for d in items), hit_met_slo=sum(d.hit_met_slo for d in items))


def request_counts(status: np.ndarray) -> Requests:
    return Requests(arrived=int(len(status)), completed=int(np.sum(status == 0)),
                    dropped_unrouted=int(np.sum(status == 1)), dropped_too_long=int(np.sum(status == 2)))


def attainment_of(met: np.ndarray, n: int, sc, k: np.ndarray) -> Attainment:
    if n == 0:
        return Attainment(slo=None, ttft=None, tbt=None, e2e=None)
    has_e2e = np.array([c.slo.e2e_ms is not None for c in sc.spec.classes])[k]
    return Attainment(slo=float(met[0].mean()), ttft=float(met[1].mean()), tbt=float(met[2].mean()),
                      e2e=float(met[3][has_e2e].mean()) if has_e2e.any() else None)


def percentiles_of(x: np.ndarray) -> Percentiles:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Percentiles(p50=None, p90=None, p99=None, mean=None)
    p = np.percentile(x, [50, 90, 99])
    return Percentiles(p50=float(p[0]), p90=float(p[1]), p99=float(p[2]), mean=float(x.mean()))


def fairness_of(values: dict[str, float | None]) -> Fairness:
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


def sum_figures(figs: list[Figures]) -> Figures:
    keys = Figures.model_fields
    return Figures(**{f: float(sum(getattr(x, f) for x in figs)) for f in keys})


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
    if rep.disruptions is not None:
        q = rep.disruptions
        what = []
        if o.interruptions:
            what.append(f"{q.spot_reclaims} spot reclaim(s) injected at x{o.interruptions:g} the scenario's rates")
        if o.late_starts:
            what.append(f"{q.late_replicas} replica(s) started late (serving after their startup time)")
        head.append(f" Disruptions: {'; '.join(what)}; {q.down_replica_seconds:,.0f} replica-seconds down; "
                    f"{q.requests_hit:,} request(s) hit, {q.hit_met_slo:,} of them still within their SLO.")
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
