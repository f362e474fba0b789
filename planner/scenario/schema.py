"""Scenario input schema (pydantic v2).

A scenario is a YAML or JSON document; its large tables are CSV files referenced by a path
relative to the document, or given inline as a list of row objects. These models describe the
document; :mod:`planner.scenario.loading` reads the tables, cross-checks every reference and aligns every
time series to the planning slots, producing a :class:`planner.scenario.loading.Scenario`.

Field docstrings become the descriptions of ``plan schema scenario``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCENARIO_SCHEMA_VERSION = 1

RATE_RESOLUTION = 1e-6
"""req/s below which a rate is below the planner's numerical resolution (one request in 11.6 days).

HiGHS meets rows to about 1e-7. A profile row serving less than this per replica would put
coefficients of 1e6 and more into ``replica_capacity`` (solver noise in the load times such a
coefficient becomes thousands of replicas), so its (config, class) pairs are treated as "cannot
serve"; demand below it is not planned. Both are named in the plan's ``warnings``."""


class _Frozen(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$")]
"""Identifier: letters, digits and ``_ . : + -``; starts with a letter or digit."""

Table = str | list[dict[str, Any]]
"""A table: a CSV path relative to the scenario file, or an inline list of row objects."""


class Objective(str, Enum):
    """What the plan minimises."""

    carbon = "carbon"
    energy = "energy"
    cost = "cost"
    gpu_hours = "gpu-hours"


class TieBreak(str, Enum):
    """How ties of the primary objective are broken (secondary: cost, or carbon when the objective is cost)."""

    routing = "routing"
    lexicographic = "lexicographic"
    none = "none"


class Horizon(_Frozen):
    start: datetime
    """Start of the first slot, ISO 8601 with an explicit UTC offset (e.g. 2023-06-01T00:00:00Z)."""
    slot_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    """Length of one planning slot in minutes (60 is typical; any whole number of minutes works)."""
    slots: int = Field(24, ge=1, le=10_000)
    """Number of slots in the horizon."""

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("start must carry a UTC offset, e.g. 2023-06-01T00:00:00Z")
        return v.astimezone(timezone.utc)


class GpuType(_Frozen):
    name: Name
    """GPU type name, as used in the profile table and in regions (e.g. H100-80GB)."""
    memory_gb: float | None = Field(None, gt=0, le=1e5)
    """Memory per GPU in GB (informational here; used by the estimators)."""


class Model(_Frozen):
    name: Name
    """Model name, as used in the profile table (e.g. llama-3.1-8b)."""
    params_billion: float | None = Field(None, gt=0, le=1e6)
    """Parameter count in billions (informational; with ``options.scaling.load_gb_per_s`` it gives the
    time to load the weights, 2 bytes per parameter)."""
    pipeline_across_vms: bool = False
    """Whether a replica's pipeline stages may sit on different VMs (each stage's ``tp`` GPUs in one
    VM), for regions that offer ``vms``. False: all ``tp x pp`` GPUs of a replica share one VM."""


class Shape(_Frozen):
    name: Name
    """Workload shape name, as used in the profile table's ``shape`` column."""
    input_tokens: int = Field(ge=1, le=100_000_000)
    """Representative prompt length in tokens."""
    output_tokens: int = Field(ge=1, le=100_000_000)
    """Representative output length in tokens (used for the end-to-end latency)."""
    distribution: Table | None = None
    """Optional joint distribution of (input, output) tokens of the shape's requests: a CSV path (or
    inline rows) with ``input_tokens, output_tokens`` and either ``weight`` (an empirical table of
    pairs; weights are normalised) or ``quantile`` (the pairs at increasing quantile levels, the last
    1: each row stands for the probability mass since the previous level). ``plan data shapes TRACE
    --distribution CLASS`` writes one from a trace. Simulated Poisson arrivals draw their lengths from
    it; without it every request has the representative lengths above."""


class Slo(_Frozen):
    ttft_ms: float = Field(gt=0, le=1e8)
    """Time to first token, end to end: network round trip from the origin plus queueing and prefill."""
    tbt_ms: float = Field(gt=0, le=1e8)
    """Time between tokens during decode."""
    e2e_ms: float | None = Field(None, gt=0, le=1e9)
    """Optional end-to-end latency: RTT + TTFT + (output_tokens - 1) x TBT."""
    percentile: Literal["mean", 50, 90, 95, 99] | None = None
    """The statistic every target above states: ``99`` means the 99th percentile over the class's
    requests (of the TTFT, of each request's mean time between tokens, of the end-to-end latency) must
    be within the target; ``mean`` the means. The planner then uses only profile rows computed for that
    statistic or a stricter one (the profile table's ``statistic`` column), and ``plan profile estimate``
    computes rows for the shape's length distribution at it (docs/performance-model.md). Unset: today's
    rule, any row's latencies are compared with the targets whatever their statistic."""
    attainment: float | None = Field(None, gt=0, le=1)
    """Fraction of the class's requests that must meet every target above when the plan is verified
    by simulation (``plan solve --verify``); unset: 0.99 (``DEFAULT_ATTAINMENT``). The solve itself
    sizes every deployment from the profile rows whatever this is."""


class RequestClass(_Frozen):
    name: Name
    """Request class name (used in the demand table)."""
    model: Name
    """The model that serves this class."""
    shape: Name
    """The workload shape of this class's requests."""
    slo: Slo
    """Latency objectives every request of this class must meet."""
    arrivals: Table | None = None
    """Optional burstiness of the class's arrivals: a CSV path (or inline rows) with ``window_requests,
    weighting, quantile, ratio``: for windows expected to hold ``window_requests`` requests, the
    ``quantile`` of the count of arrivals in the window over that expectation, weighted by ``request``
    (windows ending at each arrival) or by ``time`` (at random instants). ``plan data shapes TRACE
    --arrivals CLASS`` writes one from a trace. With it, every (config, class) is sized for the class's
    bursts (``burst_factor``, docs/formulation.md) and replicas count idle power while they have no
    work (the time-weighted rates); without it, arrivals are taken as Poisson at the demand's rate."""
    spot: bool = False
    """Whether this class may be served by replicas on spot VMs (``regions[].vms`` with a spot market).
    False: only on-demand capacity serves it."""
    on_demand_floor: float = Field(0.0, ge=0, le=1)
    """For a class that may run on spot: the fraction of its traffic in each region that the region's
    on-demand replicas must be able to serve if every spot VM there is reclaimed at once (the
    ``ondemand_floor`` family); 0: no floor."""


class RegionGpu(_Frozen):
    type: Name
    """GPU type offered in the region."""
    count: int = Field(ge=0, le=10_000_000)
    """GPUs of this type available in every slot (the availability table overrides it per slot)."""
    price_usd_per_gpu_hour: float = Field(ge=0, le=1e6)
    """Rental price of one GPU for one hour, in USD."""


class VmType(_Frozen):
    """A VM type a region rents out: whole VMs of ``gpus`` GPUs of one type, on demand and optionally on
    spot. Replicas are packed into VMs (a replica's GPUs within one VM; docs/formulation.md, "VMs")."""

    name: Name
    """Instance type, e.g. a3-highgpu-8g or Standard_ND96isr_H100_v5 (unique within the region, and not
    the name of a GPU type)."""
    gpu: Name
    """The GPU type inside."""
    gpus: int = Field(ge=1, le=1024)
    """GPUs per VM."""
    price_usd_per_hour: float = Field(ge=0, le=1e7)
    """On-demand price of one VM for one hour, USD."""
    count: int = Field(ge=0, le=10_000_000)
    """VMs available on demand in every slot (the availability table may lower it per slot)."""
    spot_price_usd_per_hour: float | None = Field(None, ge=0, le=1e7)
    """Spot price of one VM-hour, USD; None: no spot market."""
    spot_count: int = Field(0, ge=0, le=10_000_000)
    """Spot VMs available in every slot (the availability table, with ``market: spot``, may lower it)."""
    spot_interruptions_per_hour: float = Field(0.0, ge=0, le=100)
    """Expected reclaims per spot VM per hour; each costs a restart (``options.scaling``'s provisioning
    and loading times, or ``spot_restart_s``) of lost capacity, paid and planned for."""
    spot_restart_s: float | None = Field(None, ge=0, le=86_400)
    """Seconds a reclaimed spot VM's replicas are down before a replacement serves; None: the scaling
    options' startup time (provisioning plus loading), or 0 without them."""
    source: str | None = None
    """Where the prices and shape come from."""

    @model_validator(mode="after")
    def _spot(self):
        if self.spot_count > 0 and self.spot_price_usd_per_hour is None:
            raise ValueError("spot_count > 0 needs spot_price_usd_per_hour")
        return self


class Region(_Frozen):
    name: Name
    """Region (data center) name, used in the carbon, price and availability tables."""
    pue: float = Field(1.0, ge=1.0, le=5.0)
    """Power usage effectiveness: facility energy / IT energy."""
    location: str | None = None
    """Free-text location (e.g. 'us-west, California'); informational."""
    gpus: list[RegionGpu] = Field(default_factory=list)
    """GPU types offered in the region per GPU, with availability and price (any number of a type's
    GPUs form a replica; with ``vms`` elsewhere, such an offer counts as VMs of one GPU that group
    freely)."""
    vms: list[VmType] = Field(default_factory=list)
    """VM types offered in the region (whole VMs rented, on demand and on spot)."""

    @model_validator(mode="after")
    def _unique_gpus(self):
        seen = [g.type for g in self.gpus]
        dup = sorted({t for t in seen if seen.count(t) > 1})
        if dup:
            raise ValueError(f"GPU type listed twice: {', '.join(dup)}")
        names = [v.name for v in self.vms]
        dup = sorted({t for t in names if names.count(t) > 1})
        if dup:
            raise ValueError(f"VM type listed twice: {', '.join(dup)}")
        both = sorted({v.gpu for v in self.vms} & set(seen))
        if both:
            raise ValueError(f"GPU type offered both per GPU and in VMs: {', '.join(both)} (use one)")
        return self


class Origin(_Frozen):
    name: Name
    """Where users are (e.g. 'eu', 'us-east'); used in the demand table."""
    rtt_ms: dict[Name, Annotated[float, Field(ge=0, le=1e6)]] = Field(default_factory=dict)
    """Network round-trip time in ms from this origin to each region it may be served from."""
    allowed_regions: list[Name] | None = None
    """Regions this origin's traffic may be served in (data residency). Default: every region with an RTT."""


class Unserved(_Frozen):
    allowed: bool = False
    """Whether demand may go unserved (at a penalty). Default: every request must be served."""
    penalty_per_request: float = Field(1.0, ge=0, le=1e9)
    """Objective units added per request not served (kgCO2e, kWh, USD or GPU-hours, per the objective)."""


DEMAND_STATISTIC_PATTERN = r"^(mean|peak|p([1-9]|[1-9][0-9]))$"
"""Values of ``options.demand_statistic``: mean, peak, or pNN with NN from 1 to 99."""

DEFAULT_ATTAINMENT = 0.99

STATISTICS = ("mean", "p50", "p90", "p95", "p99")
"""What a profile row's latencies and ``max_rps`` are for: means, or percentiles over requests."""


def statistic_level(statistic: str) -> float | None:
    """``"p99"`` -> 0.99; ``"mean"`` -> None. ValueError for anything else."""
    if statistic == "mean":
        return None
    if statistic in STATISTICS:
        return int(statistic[1:]) / 100.0
    raise ValueError(f"unknown statistic {statistic!r}; use one of {', '.join(STATISTICS)}")


def statistic_rank(statistic: str) -> float:
    """Strictness of a statistic: its level, the mean counting as the median (0.5)."""
    lvl = statistic_level(statistic)
    return 0.5 if lvl is None else lvl


def slo_statistic(slo: "Slo") -> str | None:
    """The statistic a class's SLO states (``"p99"``, ``"mean"``), or None when it states none."""
    if slo.percentile is None:
        return None
    return "mean" if slo.percentile == "mean" else f"p{slo.percentile}"
"""The attainment a class must reach in verification when its SLO states none."""


class CapacityFactor(_Frozen):
    """A derating of one config's profiled capacity for one class: the planner lets a replica carry at
    most ``factor`` x its profiled ``max_rps`` of the class (times ``max_utilization``). Written by
    ``plan solve --verify`` where simulation found the profiled capacity too high; may also be set by hand."""

    model: Name
    gpu: Name
    tp: int = Field(ge=1, le=1024)
    pp: int = Field(ge=1, le=1024)
    freq_mhz: float = Field(gt=0, le=1e5)
    class_: Name = Field(alias="class")
    """The request class (a config's capacity differs by class: shapes and SLOs differ)."""
    factor: float = Field(gt=0, le=1)
    """Usable share of the profiled capacity, in (0, 1]."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False,
                              populate_by_name=True)


class InitialReplicas(_Frozen):
    """Replicas of one config running in a region before the horizon starts."""

    region: Name
    model: Name
    gpu: Name
    tp: int = Field(ge=1, le=1024)
    pp: int = Field(ge=1, le=1024)
    freq_mhz: float = Field(gt=0, le=1e5)
    replicas: int = Field(ge=0, le=10_000_000)
    market: Literal["on-demand", "spot"] = "on-demand"
    """The market of the VMs they run on."""


class ReplicaLimit(_Frozen):
    """Bounds on the replicas of a model (optionally in one region, on one GPU type, TP and PP) in every
    slot: ``min <= sum of the matching replicas <= max`` (family ``replica_limits``)."""

    model: Name
    region: Name | None = None
    """None: summed over every region."""
    gpu: Name | None = None
    """None: every GPU type."""
    tp: int | None = Field(None, ge=1, le=1024)
    pp: int | None = Field(None, ge=1, le=1024)
    min: int = Field(0, ge=0, le=10_000_000)
    max: int | None = Field(None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _order(self):
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Scaling(_Frozen):
    """The fleet over time: replicas carry over between slots, and starting one costs time.

    With it, the model plans the horizon as one: ``replicas[r,c,t] = replicas[r,c,t-1] + started -
    stopped``, and each started replica is paid (GPU time, idle power) for its startup time before the
    slot it serves, so it serves the whole slot (scaled out ahead of the demand, as a forecast-driven
    autoscaler does). docs/formulation.md, "The fleet over time"."""

    provision_s: float = Field(0.0, ge=0, le=86_400)
    """Seconds from asking for a replica to its engine starting (VM provisioning, container start);
    SageServe measured 155 s of VM spin-up on Azure."""
    load_gb_per_s: float | None = Field(None, gt=0, le=10_000)
    """Bandwidth at which a replica loads its model's weights (GB/s); with the model's ``params_billion``
    (2 bytes per parameter) it adds the loading time. None: loading is part of ``provision_s``."""
    max_change: int | None = Field(None, ge=0, le=10_000_000)
    """Most replicas started plus stopped per (region, config) in one slot; None: no cap."""
    min_up_slots: int = Field(1, ge=1, le=100_000)
    """A started replica runs at least this many slots (1: no constraint beyond its own slot)."""
    scale_down_delay_slots: int = Field(0, ge=0, le=63)
    """A deployment keeps, in every slot, the capacity its load needed in each of the previous this many
    slots (a scale-down stabilisation window, as Kubernetes' HPA has); 0: none."""
    initial: list[InitialReplicas] = Field(default_factory=list, max_length=100_000)
    """What runs before the first slot (e.g. the last slot of the plan in force); the first slot's
    starts and stops are counted from it. Empty: nothing runs."""


class Options(_Frozen):
    objective: Objective = Objective.carbon
    """What to minimise: carbon (kgCO2e), energy (kWh), cost (USD) or gpu-hours."""
    budget_usd: float | None = Field(None, ge=0, le=1e15)
    """Spending cap over the horizon: GPU rental plus priced electricity, in USD."""
    carbon_cap_kg: float | None = Field(None, ge=0, le=1e15)
    """Emission cap over the horizon, kgCO2e."""
    max_utilization: float = Field(0.8, gt=0, le=1)
    """Headroom: the load of a replica stays within this fraction of its profiled maximum rate."""
    unserved: Unserved = Field(default_factory=Unserved)
    """Whether unserved demand is allowed, and its penalty."""
    demand_statistic: str = Field("mean", pattern=DEMAND_STATISTIC_PATTERN)
    """How a slot's demand is taken from a demand table finer than the slot: ``mean`` (the
    time-weighted mean, the default), ``peak`` (the largest rate within the slot) or ``pNN`` (the
    time-weighted NN-th percentile of the rates within the slot, e.g. ``p95``). Sizing each slot for
    its peak provisions every sub-interval, as FREESH does for every 5-minute step of a window."""
    capacity_factors: list[CapacityFactor] = Field(default_factory=list, max_length=100_000)
    """Deratings of (config, class) capacities (see ``CapacityFactor``); empty: every profile row's
    ``max_rps`` is used as it is. At most one entry per (model, gpu, tp, pp, freq_mhz, class)."""
    burst_absorption: float = Field(1.0, gt=0, le=1)
    """Share of a class's TTFT target that a burst may spend queueing, for classes that state
    ``arrivals``: the fleet keeps ``count(window) <= capacity x (window + burst_absorption x TTFT)`` at
    the class's percentile over every window, which gives its burst factor (docs/formulation.md). The
    default 1 is calibrated on the default scenario replayed with its traces (README); lower it for a
    margin."""
    replica_limits: list[ReplicaLimit] = Field(default_factory=list, max_length=100_000)
    """Min and max replicas per model, deployment (region, GPU type, TP, PP) or anything between, in
    every slot (``ReplicaLimit``)."""
    scaling: Scaling | None = None
    """Plan the fleet over time (``Scaling``): replicas carry over between slots with startup costs and
    optional limits on change. None (default): every slot is sized on its own, as before."""
    tie_break: TieBreak = TieBreak.routing
    """routing (default): keep the fleet found for the objective and re-route traffic to minimise the
    secondary objective (cost for carbon, energy and gpu-hours; carbon for cost) with the primary held at
    its value (an LP, milliseconds). lexicographic: minimise the secondary over all plans, fleet included,
    with the primary held at its value (a second MILP). none: a single solve."""


class ScenarioSpec(_Frozen):
    """A planning scenario: fleet, demand, tables and options."""

    schema_version: Literal[1] = 1
    """Version of this schema."""
    name: str = Field("scenario", min_length=1, max_length=200)
    """Human-readable scenario name."""
    description: str | None = None
    """Free text."""
    horizon: Horizon
    """Planning horizon: start, slot length and number of slots."""
    gpu_types: list[GpuType] = Field(min_length=1)
    models: list[Model] = Field(min_length=1)
    shapes: list[Shape] = Field(min_length=1)
    classes: list[RequestClass] = Field(min_length=1)
    regions: list[Region] = Field(min_length=1)
    origins: list[Origin] = Field(min_length=1)
    profiles: Table
    """Profiled GPU table. Columns: model, gpu, tp, pp, freq_mhz, shape, max_rps, ttft_ms, tbt_ms,
    busy_power_w, idle_power_w, active_power_w (optional), source (optional), expected_error (optional).
    One row per (model, gpu, tp, pp, freq_mhz, shape)."""
    carbon_intensity: Table
    """Grid carbon intensity. Columns: timestamp (ISO 8601, UTC), region, gco2_per_kwh. Each region's
    series must be regular (no gaps) and cover the whole horizon; a value holds until the next timestamp."""
    demand: Table
    """Request rates. Columns: timestamp, class, origin, rate_rps. Missing (class, origin) pairs have no
    demand; a present series must be regular and cover the horizon."""
    electricity_price: Table | None = None
    """Optional electricity price. Columns: timestamp, region, usd_per_mwh. Regions without rows are unpriced."""
    availability: Table | None = None
    """Optional per-slot GPU availability. Columns: timestamp, region, gpu, count. Overrides the region's
    constant count for the (region, gpu) series it lists; the minimum over a slot applies."""
    options: Options = Field(default_factory=Options)
    """Objective, budget, caps and other options; command-line flags override them."""


def scenario_json_schema() -> dict:
    """JSON Schema of the scenario document."""
    return ScenarioSpec.model_json_schema()
