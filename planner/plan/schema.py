"""Serving plan output schema (pydantic v2) and its deterministic JSON form.

A plan is deterministic: the same scenario and options give the same bytes, except the timing
fields ``solver.build_seconds`` and ``solver.solve_seconds``. Floats are rounded to 10 significant
digits so that solver noise below that does not change the file.
"""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_SCHEMA_VERSION = "1.0"
TIMING_FIELDS = ("build_seconds", "solve_seconds", "simulate_seconds")
"""Fields that hold measured times (in ``solver`` and in ``verification.rounds``): not deterministic."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True)


class ScenarioRef(_Out):
    name: str
    fingerprint: str
    """sha256 of the scenario's content (document without options, and its tables)."""
    source: str | None = None
    """Where the scenario was read from: the document's absolute path, ``<default>`` for the embedded
    default, or null for a scenario built in memory. ``plan check`` and ``plan simulate`` load it when
    no ``--scenario`` is given."""


class ObjectiveValue(_Out):
    name: Literal["carbon", "energy", "cost", "gpu-hours"]
    value: float
    """Value of the objective for this plan, including any unserved-demand penalty."""
    unit: str
    secondary: str | None = None
    """Tie-break objective minimised among plans optimal for the primary (lexicographic), if any."""
    secondary_value: float | None = None


class Totals(_Out):
    carbon_kg: float
    """Operational emissions over the horizon, kgCO2e (IT energy x PUE x grid intensity)."""
    energy_kwh: float
    """Facility energy over the horizon, kWh (IT energy x PUE)."""
    cost_usd: float
    """GPU rental plus priced electricity, USD."""
    gpu_cost_usd: float
    electricity_cost_usd: float
    gpu_hours: float
    served_requests: float
    """Requests routed to a deployment over the horizon (demand below 1e-6 req/s, the planner's
    resolution, is not planned and not counted: the plan's warnings name it)."""
    unserved_requests: float
    unserved_rps: float
    """Mean unserved rate over the horizon: unserved_requests / horizon seconds."""
    scaling_gpu_hours: float | None = None
    """With ``options.scaling``: GPU-hours spent starting replicas (included in gpu_hours, and their cost
    and idle energy in the other totals); None otherwise."""
    replicas_started: int | None = None
    """With ``options.scaling``: replicas started over the horizon (from the initial fleet)."""
    replicas_stopped: int | None = None
    """With ``options.scaling``: replicas stopped over the horizon."""
    vm_hours: float | None = None
    """With VMs: VM-hours rented (whole VMs, spot and on demand)."""
    spot_gpu_hours: float | None = None
    """With VMs: GPU-hours of spot VMs (included in gpu_hours)."""
    spot_restart_gpu_hours: float | None = None
    """With spot VMs that may be reclaimed: the expected GPU-hours lost to restarts (included in gpu_hours,
    their cost and idle energy in the other totals)."""
    vms_started: int | None = None
    """With VMs and ``options.scaling``: VMs started over the horizon."""


class SolverInfo(_Out):
    backend: Literal["highs", "pyomo", "pulp"]
    status: str
    """Solver's own termination message of the primary solve."""
    gap: float | None
    """Relative gap of the primary objective at the end of its solve (0 when proven optimal)."""
    bound: float | None
    """Best proven lower bound of the primary objective."""
    mip_gap: float
    time_limit: float | None
    threads: int | None
    seed: int | None
    tie_break: str
    """'lexicographic', 'none', or why the tie-break stage was skipped."""
    variables: int
    constraints: int
    integer_variables: int
    slots_solved_separately: bool = False
    """True when no constraint coupled the slots and each slot was solved as its own model."""
    build_seconds: float
    solve_seconds: float


class PruningInfo(_Out):
    configs_total: int
    pruned_slo: int
    pruned_dominated: int
    kept: int
    pairs_pruned_slo: int


class ClassLoad(_Out):
    class_: str = Field(alias="class")
    rate_rps: float
    ttft_ms: float
    """Profiled TTFT of this config for the class (at its max rate), network excluded."""
    tbt_ms: float


class Deployment(_Out):
    id: str
    """Stable identifier: region/model|gpu|tpN|ppN|freqMHz (plus #light or #saturated for a pool)."""
    region: str
    model: str
    gpu: str
    tp: int
    pp: int
    freq_mhz: float
    pool: Literal["light", "saturated"] | None = None
    """With bursty classes (``arrivals``), a config whose classes include lightly loaded ones (a replica
    holds under one request on average at its operating point) and saturated ones runs them on two
    pools of replicas, ``light`` and ``saturated``, each its own deployment (id suffix ``#pool``); None
    otherwise. See docs/formulation.md, "Power of a deployment"."""
    market: Literal["on-demand", "spot"] | None = None
    """With VMs (``regions[].vms``): the market of the VMs the replicas run on (a spot deployment's id
    ends in ``|spot``); None without VMs (on demand)."""
    replicas: int
    gpus: int
    utilization: float
    """Load as a fraction of the replicas' profiled maximum: sum_k rate_k / (mu_k x replicas)."""
    power_w: float
    """IT power of all replicas: base x replicas + sum_k max(busy_k - base, 0) x rate_k / mu_k, where base is the
    zero-load power of a replica of this config, the largest active_power_w of its profile rows (idle_power_w
    where empty); see docs/formulation.md, "Power of a deployment"."""
    classes: list[ClassLoad]


class Target(_Out):
    deployment: str
    rate_rps: float


class Route(_Out):
    class_: str = Field(alias="class")
    origin: str
    region: str
    rate_rps: float
    share: float
    """Fraction of this (class, origin) demand in the slot sent to this region."""
    rtt_ms: float
    targets: list[Target]
    """How the routed rate splits over the region's deployments (each meets the SLOs with this RTT)."""


class UnservedRate(_Out):
    class_: str = Field(alias="class")
    origin: str
    rate_rps: float


class SlotTotals(_Out):
    carbon_kg: float
    energy_kwh: float
    cost_usd: float
    gpu_hours: float


class ScaleAction(_Out):
    """Replicas of one deployment base started and stopped at the start of a slot (``options.scaling``).

    A base is what a replica is whatever its GPU clock and latency pool: region, model, GPU type, TP, PP
    and market. Replicas that only change clock or pool between slots are neither started nor stopped."""

    deployment: str
    """The base, ``region/model|gpu|tpN|ppN`` (``|spot`` on spot), whether or not it still runs in this slot."""
    started: int
    """Replicas started for this slot: paid for their startup time before it, serving all of it."""
    stopped: int
    """Replicas stopped at the start of this slot (drained)."""


class VmUse(_Out):
    """VMs of one type and market rented in a region in a slot (``regions[].vms``)."""

    region: str
    vm: str
    """The VM type (a per-GPU offer appears under its GPU type's name, as VMs of one GPU)."""
    market: Literal["on-demand", "spot"]
    gpus_per_vm: int
    count: int
    """VMs rented for the slot."""
    started: int | None = None
    """With ``options.scaling``: VMs started for the slot (provisioned before it), from the previous slot
    or the initial fleet."""
    stopped: int | None = None
    """With ``options.scaling``: VMs released at the start of the slot."""


class ClassHeadroom(_Out):
    """The margin a slot's fleet carries for one class."""

    class_: str = Field(alias="class")
    demand_rps: float
    """The class's demand in the slot (all origins)."""
    burst_factor: float
    """Each req/s of the class counts this many times against replica capacity: the class's bursts at
    its percentile (from its ``arrivals``; 1 for Poisson traffic)."""
    surge: float | None
    """How far the class's demand in the slot can grow (a factor), routing shares kept and the other
    classes unchanged, before some deployment serving it reaches its profiled capacity (utilisation 1
    of max_rps x capacity factor, whatever max_utilization and the burst factor reserve). None when the
    class is not served in the slot."""


class Slot(_Out):
    index: int
    start: str
    deployments: list[Deployment]
    routing: list[Route]
    unserved: list[UnservedRate]
    totals: SlotTotals
    headroom: list[ClassHeadroom] = []
    """Per class with demand in the slot: its burst factor and surge margin."""
    actions: list[ScaleAction] | None = None
    """With ``options.scaling``: the replicas started and stopped per deployment at the start of the slot
    (relative to the previous slot, or to the initial fleet); None otherwise."""
    vms: list[VmUse] | None = None
    """With VMs (``regions[].vms``): the VMs rented per (region, VM type, market); None otherwise."""


class CapacityFactor(_Out):
    """A (config, class) capacity derating the plan was sized with."""

    model: str
    gpu: str
    tp: int
    pp: int
    freq_mhz: float
    class_: str = Field(alias="class")
    factor: float
    """Usable share of the profile row's max_rps for this class, in (0, 1]."""


class PlanOptions(_Out):
    objective: str
    budget_usd: float | None
    carbon_cap_kg: float | None
    max_utilization: float
    unserved_allowed: bool
    unserved_penalty_per_request: float
    tie_break: str
    demand_statistic: str = "mean"
    """How each slot's demand was taken from the demand table (mean, peak or pNN)."""
    burst_absorption: float = 1.0
    """Share of each TTFT target a burst may spend queueing (options.burst_absorption): with the classes'
    arrivals tables it gives their burst factors; ``plan check`` applies it too."""
    capacity_factors: list[CapacityFactor] = []
    """Deratings applied to ``replica_capacity`` (from the scenario's options or from ``--verify``);
    ``plan check`` applies them too."""
    replica_limits: list[dict] | None = None
    """``options.replica_limits`` as the plan was solved with (None when there are none)."""
    scaling: dict | None = None
    """``options.scaling`` as the plan was solved with (provision_s, load_gb_per_s, max_change,
    min_up_slots, initial); ``plan check`` verifies the plan's actions against it. None: slots sized on
    their own."""


class VerificationGroup(_Out):
    class_: str = Field(alias="class")
    origin: str
    requests: int
    attainment: float
    """Share of the simulated requests of this (class, origin) that met every SLO of the class."""
    target: float


class VerificationRound(_Out):
    iteration: int
    """0: the plan as first solved; i: after the i-th derating."""
    attainment: float
    """Share of all simulated requests that met every SLO of their class."""
    worst: str
    """The (class/origin) furthest below its target (or the lowest, when all are met)."""
    worst_attainment: float
    met: bool
    """Every (class, origin) reached its target."""
    carbon_kg: float
    cost_usd: float
    gpu_hours: float
    factors: int
    """How many (config, class) capacity factors the plan of this round was sized with."""
    solve_seconds: float
    simulate_seconds: float


class Verification(_Out):
    """How the plan was verified by simulation and derated until its SLOs held (``plan solve --verify``)."""

    arrivals: Literal["trace", "poisson"]
    traces: list[str]
    policy: str
    window_minutes: float
    """Minutes simulated at the start of each slot."""
    load_scale: float
    seed: int
    max_iterations: int
    met: bool
    """The plan below met every (class, origin) target in its last simulation."""
    rounds: list[VerificationRound]
    groups: list[VerificationGroup]
    """Per (class, origin) attainment of the final plan in simulation."""
    stopped: str | None = None
    """Why the loop ended with targets still missed (None when they were met)."""


class Plan(_Out):
    """A serving plan: what runs where, how traffic is routed, and what it costs."""

    schema_version: Literal["1.0"] = PLAN_SCHEMA_VERSION
    scenario: ScenarioRef
    status: Literal["optimal", "feasible"]
    """optimal: proven within the requested MIP gap; feasible: best plan found at a limit."""
    objective: ObjectiveValue
    options: PlanOptions
    totals: Totals
    solver: SolverInfo
    pruning: PruningInfo
    horizon: dict
    """start (UTC), slot_minutes, slots."""
    warnings: list[str] = []
    """What the planner left out or treated specially (e.g. profile rows or demand below its
    numerical resolution), in words."""
    verification: Verification | None = None
    """The simulation loop the plan went through (``plan solve --verify``); None when not verified."""
    slots: list[Slot]

    # ---- serialisation
    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys kept in schema order, floats rounded)."""
        data = round_floats(self.model_dump(mode="json", by_alias=True))
        for sl in data.get("slots", []):  # pool only when a config is split (bursty classes)
            for d in sl.get("deployments", []):
                if d.get("pool") is None:
                    d.pop("pool", None)
                if d.get("market") is None:  # market only with VMs
                    d.pop("market", None)
            for f in ("actions", "vms"):  # actions only with options.scaling, VMs only with VM offers
                if sl.get(f) is None:
                    sl.pop(f, None)
            for vm in sl.get("vms") or []:
                for f in ("started", "stopped"):
                    if vm.get(f) is None:
                        vm.pop(f)
        for f in ("scaling_gpu_hours", "replicas_started", "replicas_stopped", "vm_hours", "spot_gpu_hours",
                  "spot_restart_gpu_hours", "vms_started"):
            if data.get("totals", {}).get(f, 0) is None:
                data["totals"].pop(f)
        for f in ("scaling", "replica_limits"):
            if data.get("options", {}).get(f, 0) is None:
                data["options"].pop(f)
        return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.model_validate_json(text)

    def without_timings(self) -> dict:
        d = json.loads(self.to_json())
        for part in [d["solver"]] + (d["verification"]["rounds"] if d.get("verification") else []):
            for f in TIMING_FIELDS:
                part.pop(f, None)
        return d


def round_floats(o):
    if isinstance(o, float):
        if o == 0 or not math.isfinite(o):
            return 0.0 if o == 0 else o
        r = float(f"{o:.10g}")
        return 0.0 if r == 0 else r
    if isinstance(o, dict):
        return {k: round_floats(v) for k, v in o.items()}
    if isinstance(o, list):
        return [round_floats(v) for v in o]
    return o


def plan_json_schema() -> dict:
    return Plan.model_json_schema(by_alias=True)
