"""Independent verification of a plan against its scenario.

:func:`check` recomputes everything a plan claims from the scenario's arrays and the plan's own
decisions (replicas, per-class rates, routes, targets, unserved rates) with plain numpy/pandas. It
deliberately shares no code with the model builder (:mod:`formulations`) or the solver
(:mod:`planner.optimize`): a bug there cannot hide itself here.

Every violated relation is reported as a :class:`Violation` of one *family*:

================  ==================================================================================
family            relation checked
================  ==================================================================================
fingerprint       the plan was made for this scenario (same content fingerprint)
options           the plan's recorded options are coherent (objective name, ranges)
reference         names, configs, ids, slots and targets refer to things that exist
integrality       replicas are whole and >= 0; gpus == replicas x tp x pp
demand_served     routed + unserved rate == demand for every (class, origin, slot); no negative rate;
                  unserved demand only when allowed
data_residency    routes only to regions the origin may be served in
route_balance     targets add up to their route; class rates add up to the targets pointing at them
latency_ttft      RTT + profiled TTFT within the class's TTFT SLO; route RTT and reported TTFT match
                  the scenario
latency_e2e       RTT + TTFT + (output tokens - 1) x TBT within the e2e SLO, when one is set
latency_tbt       profiled TBT within the class's TBT SLO; reported TBT matches the profile
replica_flow      with options.scaling: replicas of consecutive slots change by the slot's actions (from the
                  initial fleet), within max_change, min_up_slots respected; startup costs in the totals
replica_capacity  sum_k beta_k x rate_k / (max_rps_k x factor_k) <= max_utilization x replicas (factor_k: the
                  plan's capacity_factors, 1 where none; beta_k: the class's burst factor in the slot, from
                  its arrivals table and the plan's burst_absorption, 1 without); reported utilisation
replica_limits    options.replica_limits: matching replicas per slot within min and max
gpu_availability  GPUs used per (region, GPU type, slot) within availability (per-GPU offers)
vm_packing        with VMs: the slot's VMs per (region, VM type, market) are offered, within their availability,
                  and hold every replica (largest first, each replica's GPUs in one VM, or each stage's with
                  pipeline_across_vms); VM starts and stops follow the counts (options.scaling)
spot              with spot VMs: only classes with spot: true run on spot deployments; each region's on-demand
                  replicas could carry on_demand_floor of each spot class's traffic there, plus the classes
                  that never run on spot (a small LP per region and slot)
power             reported power == base x replicas + sum_k max(busy_k - base, 0) x rate_k / max_rps_k,
                  base = the config's largest active_power_w (idle_power_w where empty); when some class
                  states arrivals: idle x replicas + the same load term + sum_k (base - idle) x rate_k x
                  b_k / x_k, x_k = max_utilization x max_rps_k x factor_k / beta_k, b_k =
                  planner.scenario.arrivals.busy_share at x_k x service_k (idle: the config's largest
                  idle_power_w; service_k: the row's service_ms in s, else TTFT + (mean output - 1) x TBT)
totals            per-slot and horizon totals (energy, carbon, costs, GPU-hours, requests)
objective         objective value (with the unserved penalty) and route shares
budget            cost within the plan's budget, when set
carbon_cap        emissions within the plan's carbon cap, when set
================  ==================================================================================

The effective options (budget, cap, max utilisation, unserved demand and its penalty) are the ones
the plan records: they include the command-line overrides it was solved with.

Derived checks use recomputed values: totals are recomputed from the replicas and rates (not from the
reported ``power_w``), so each wrong number is reported where it is wrong. Rows whose references
cannot be resolved are reported under ``reference`` and left out of the numeric checks that need
them (the reported power stands in for a deployment whose config is unknown).
"""

from __future__ import annotations

import json
import math
import re
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from planner.errors import InputError, PlanFileError, Problem
from planner.io import read_text_input
from planner.plan.schema import Plan
from planner.scenario.arrivals import busy_share
from planner.scenario.loading import Scenario, load_scenario
from planner.scenario.schema import DEMAND_STATISTIC_PATTERN, RATE_RESOLUTION, slo_statistic, statistic_rank

FAMILIES = (
    "fingerprint", "options", "reference", "integrality", "demand_served", "data_residency", "route_balance",
    "latency_ttft", "latency_e2e", "latency_tbt", "replica_capacity", "replica_flow", "replica_limits",
    "gpu_availability", "vm_packing", "spot", "power", "totals", "objective", "budget", "carbon_cap",
)
"""Every family, in the order reports list them."""

OBJECTIVE_TOTAL = {"carbon": "carbon_kg", "energy": "energy_kwh", "cost": "cost_usd", "gpu-hours": "gpu_hours"}
OBJECTIVE_UNIT = {"carbon": "kgCO2e", "energy": "kWh", "cost": "USD", "gpu-hours": "GPU-h"}
SLOT_TOTALS = ("carbon_kg", "energy_kwh", "cost_usd", "gpu_hours")
TOTALS = ("carbon_kg", "energy_kwh", "cost_usd", "gpu_cost_usd", "electricity_cost_usd", "gpu_hours",
          "served_requests", "unserved_requests", "unserved_rps")
INT_TOL = 1e-9
"""How far from a whole number a replica or GPU count may be (plans round to 10 significant digits)."""
_RANK = {f: i for i, f in enumerate(FAMILIES)}


# --------------------------------------------------------------------------------------------
# report


@dataclass(frozen=True)
class Violation:
    """One violated relation: its family, where (index name -> value), what, and by how much."""

    family: str
    where: dict
    message: str
    excess: float
    """By how much the relation is violated, in the relation's unit (0 for non-numeric ones)."""

    def to_dict(self) -> dict:
        return {"family": self.family, "where": dict(self.where), "message": self.message,
                "excess": _json_float(self.excess)}

    def __str__(self) -> str:
        return f"{self.family}: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check`."""

    ok: bool
    violations: list[Violation]
    recomputed: dict
    """Totals recomputed from the scenario and the plan's decisions (horizon and per slot)."""
    checked: dict[str, int]
    """How many items each family checked."""

    @property
    def families(self) -> list[str]:
        """Families with at least one violation, in report order."""
        seen = {v.family for v in self.violations}
        return [f for f in FAMILIES if f in seen]

    def by_family(self) -> dict[str, list[Violation]]:
        out: dict[str, list[Violation]] = {}
        for v in self.violations:
            out.setdefault(v.family, []).append(v)
        return {f: out[f] for f in FAMILIES if f in out}

    @property
    def n_checks(self) -> int:
        return int(sum(self.checked.values()))

    def to_dict(self) -> dict:
        """JSON-able form, deterministic order."""
        return {
            "ok": self.ok,
            "checks": self.n_checks,
            "checked": {f: int(self.checked.get(f, 0)) for f in FAMILIES},
            "violation_counts": {f: len(v) for f, v in self.by_family().items()},
            "violations": [v.to_dict() for v in self.violations],
            "recomputed": _jsonable(self.recomputed),
        }

    def render(self, limit: int = 30) -> str:
        """A readable summary: that the plan holds, or its violations grouped by family."""
        fams = [f for f in FAMILIES if self.checked.get(f, 0) > 0]
        if self.ok:
            return f"plan holds: {self.n_checks} checks in {len(fams)} families"
        groups = self.by_family()
        n = len(self.violations)
        lines = [f"plan violates {n} check{'s' if n != 1 else ''} in {len(groups)} "
                 f"famil{'ies' if len(groups) != 1 else 'y'} ({self.n_checks} checks in {len(fams)} families):"]
        shown = 0
        for fam, vs in groups.items():
            if shown >= limit:
                break
            lines.append(f"{fam} ({len(vs)}):")
            for v in vs:
                if shown >= limit:
                    break
                lines.append(f"  - {v.message}")
                shown += 1
        if n > shown:
            rest = {f: len(vs) for f, vs in groups.items()}
            lines.append(f"  ... and {n - shown} more (" + ", ".join(f"{f}: {c}" for f, c in rest.items()) + ")")
        return "\n".join(lines)


def _json_float(x):
    x = float(x)
    if math.isfinite(x):
        return x
    return None if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return _json_float(o)
    return o


# --------------------------------------------------------------------------------------------
# reading a plan


def _loc(loc) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (("." if s else "") + str(p))
    return s


def _schema_problems(e: ValidationError, where: str, skip=lambda err: False, limit: int = 200) -> list[Problem]:
    out = []
    for err in e.errors():
        if skip(err):
            continue
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        loc = _loc(err["loc"])
        out.append(Problem(f"{where}: {loc}" if loc else where, msg))
        if len(out) >= limit:
            out.append(Problem(where, "further problems not listed"))
            break
    return out


def _read_source(plan) -> tuple[Any, str]:
    """The plan's JSON data and a label of where it came from."""
    if isinstance(plan, (bytes, bytearray)):
        plan = bytes(plan).decode("utf-8", errors="replace")
        where = "<plan>"
        text = plan
    elif isinstance(plan, str) and plan.lstrip().startswith(("{", "[")):
        where, text = "<plan>", plan
    elif isinstance(plan, (str, Path)):
        path = Path(plan)
        where = str(path)
        try:
            text = read_text_input(path, "plan file")
        except InputError as e:
            raise PlanFileError(e.problems) from None
    elif isinstance(plan, dict):
        return plan, "<plan>"
    else:
        raise PlanFileError([Problem("<plan>", f"cannot read a plan from a {type(plan).__name__}")])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanFileError([Problem(f"{where}: line {e.lineno}", f"malformed JSON: {e.msg}")]) from None
    except RecursionError:
        raise PlanFileError([Problem(where, "the JSON is nested too deeply to be a plan")]) from None
    if not isinstance(data, dict):
        raise PlanFileError([Problem(where, "a plan must be a JSON object with the plan's fields")])
    return data, where


def read_plan(source) -> Plan:
    """Read a plan (path, JSON text, dict or Plan), strictly validated against the plan schema.

    Raises :class:`~planner.errors.PlanFileError` naming the file and every field in error.
    """
    if isinstance(source, Plan):
        return source
    data, where = _read_source(source)
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        raise PlanFileError(_schema_problems(e, where)) from None


_LENIENT = ("replicas", "gpus")


def _is_lenient(err) -> bool:
    loc = err["loc"]
    return (err["type"] == "int_from_float" and len(loc) == 5 and loc[0] == "slots" and loc[2] == "deployments"
            and loc[4] in _LENIENT and isinstance(loc[1], int) and isinstance(loc[3], int))


def _load_for_check(plan) -> tuple[Plan, dict]:
    """Like :func:`read_plan`, but fractional replica/GPU counts are kept for the integrality check.

    Returns the plan (with such counts replaced by a placeholder) and ``{(slot position, deployment
    position, field): value}`` of the fractional counts.
    """
    if isinstance(plan, Plan):
        return plan, {}
    data, where = _read_source(plan)
    try:
        return Plan.model_validate(data), {}
    except ValidationError as e:
        errs = e.errors()
        if not all(_is_lenient(err) for err in errs):
            raise PlanFileError(_schema_problems(e, where, skip=_is_lenient)) from None
    # patch copies along the paths of the fractional counts only
    over: dict = {}
    patched = dict(data)
    patched["slots"] = list(data["slots"])
    for err in errs:
        _, si, _, di, f = err["loc"]
        slot = patched["slots"][si]
        if slot is data["slots"][si]:
            slot = dict(slot)
            slot["deployments"] = list(slot["deployments"])
            patched["slots"][si] = slot
        dep = slot["deployments"][di]
        if dep is data["slots"][si]["deployments"][di]:
            dep = dict(dep)
            slot["deployments"][di] = dep
        over[(si, di, f)] = float(err["input"])
        dep[f] = 0
    try:
        return Plan.model_validate(patched), over
    except ValidationError as e:
        raise PlanFileError(_schema_problems(e, where)) from None


# --------------------------------------------------------------------------------------------
# helpers


def _n(x) -> str:
    """A number for a message: up to 10 significant digits."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    s = f"{x:.10g}"
    return s


def _sig(a) -> np.ndarray:
    """Floats rounded to 10 significant digits (how plans store them), for joins on frequencies."""
    return np.array([float(f"{float(v):.10g}") for v in np.asarray(a, dtype=float)], dtype=float)


DEMAND_STATISTIC = re.compile(DEMAND_STATISTIC_PATTERN)


def _config_key(model, gpu, tp, pp, freq) -> str:
    f = float(freq)
    fs = str(int(f)) if math.isfinite(f) and f == int(f) else f"{f:.10g}"
    return f"{model}|{gpu}|tp{int(tp)}|pp{int(pp)}|{fs}MHz"


def base_key(model, gpu, tp, pp, spot: bool) -> str:
    """A deployment base's label (scaling actions name ``region/base``): what a replica is whatever its
    clock and pool."""
    return f"{model}|{gpu}|tp{int(tp)}|pp{int(pp)}" + ("|spot" if spot else "")


def _parse_time(s) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc)


def _codes(values, names: list[str]) -> np.ndarray:
    """Index of each value in ``names`` (-1 when unknown)."""
    m = {n: i for i, n in enumerate(names)}
    return np.array([m.get(v, -1) for v in values], dtype=np.int64)


def _py(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.str_):
        return str(v)
    return v


class _Out:
    """Collects violations and per-family check counts."""

    def __init__(self, rel_tol: float, abs_tol: float):
        self.rel, self.abs = rel_tol, abs_tol
        self.items: list[tuple] = []
        self.checked = {f: 0 for f in FAMILIES}

    def add(self, family: str, where: dict, message: str, excess: float = 0.0) -> None:
        where = {k: _py(v) for k, v in where.items() if v is not None}
        self.items.append((family, where, message, float(excess)))

    def count(self, family: str, n: int) -> None:
        self.checked[family] += int(n)

    # tolerances (NaN always fails)
    def tol(self, a, b):
        """max(abs_tol, rel_tol x magnitude), the magnitude of finite values only (inf never passes)."""
        with np.errstate(invalid="ignore"):
            fa = np.where(np.isfinite(a), np.abs(a), 0.0)
            fb = np.where(np.isfinite(b), np.abs(b), 0.0)
        return np.maximum(self.abs, self.rel * np.maximum(fa, fb))

    def ne(self, a, b) -> np.ndarray:
        a, b = np.asarray(a, float), np.asarray(b, float)
        with np.errstate(invalid="ignore"):
            return ~(np.abs(a - b) <= self.tol(a, b))

    def gt(self, a, b) -> np.ndarray:
        """a exceeds b beyond the tolerance."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        with np.errstate(invalid="ignore"):
            return ~(a - b <= self.tol(a, b))

    def report(self, recomputed: dict) -> CheckReport:
        order = sorted(range(len(self.items)),
                       key=lambda i: (_RANK[self.items[i][0]], _slot_key(self.items[i][1]), i))
        vs = [Violation(*self.items[i]) for i in order]
        return CheckReport(ok=not vs, violations=vs, recomputed=recomputed, checked=dict(self.checked))


def _slot_key(where: dict):
    s = where.get("slot")
    return (0, s) if isinstance(s, int) else (-1, 0)


# --------------------------------------------------------------------------------------------
# flattening


def _transport_feasible(cap: dict, need: dict, arcs: list, tol: float = 1e-7) -> bool:
    """Whether rates z >= 0 on ``arcs`` (deployment, class, capacity used per req/s) exist with, per
    deployment, sum a z <= cap and, per class, sum z >= need: phase 1 of a dense simplex (Bland's rule),
    written here so that the checker needs no solver."""
    arcs = [a for a in arcs if a[0] in cap and a[1] in need]
    if any(need[k] > tol and not any(a[1] == k for a in arcs) for k in need):
        return False
    deps, cls = list(cap), list(need)
    n, m1, m2 = len(arcs), len(deps), len(cls)
    if n == 0:
        return all(v <= tol for v in need.values())
    scale = max([1.0] + [abs(v) for v in need.values()] + [abs(v) for v in cap.values()])
    # columns: z (n), slack per deployment (m1), surplus per class (m2), artificial per class (m2)
    ncol = n + m1 + 2 * m2
    A = np.zeros((m1 + m2, ncol + 1))
    for j, (d, k, a) in enumerate(arcs):
        A[deps.index(d), j] = a
        A[m1 + cls.index(k), j] = 1.0
    for i, d in enumerate(deps):
        A[i, n + i] = 1.0
        A[i, -1] = cap[d] / scale
    for i, k in enumerate(cls):
        A[m1 + i, n + m1 + i] = -1.0
        A[m1 + i, n + m1 + m2 + i] = 1.0
        A[m1 + i, -1] = need[k] / scale
    basis = list(range(n, n + m1)) + list(range(n + m1 + m2, ncol))
    cost = np.zeros(ncol)
    cost[n + m1 + m2:] = 1.0
    for _ in range(50 * (m1 + m2 + ncol)):
        red = cost - cost[basis] @ A[:, :-1]
        enter = next((j for j in range(ncol) if red[j] < -1e-12), None)
        if enter is None:
            break
        col = A[:, enter]
        ratios = [(A[i, -1] / col[i], basis[i], i) for i in range(len(basis)) if col[i] > 1e-12]
        if not ratios:
            break
        _, _, row = min(ratios)
        A[row] /= A[row, enter]
        for i in range(len(basis)):
            if i != row and A[i, enter] != 0.0:
                A[i] -= A[i, enter] * A[row]
        basis[row] = enter
    art = sum(A[i, -1] for i, b in enumerate(basis) if b >= n + m1 + m2)
    return art * scale <= tol * max(1.0, sum(need.values()))


def _flatten(p: Plan, over: dict) -> dict[str, pd.DataFrame]:
    sl = {c: [] for c in ("index", "start", *SLOT_TOTALS)}
    dp = {c: [] for c in ("pos", "di", "id", "region", "model", "gpu", "tp", "pp", "freq", "pool", "market", "replicas",
                          "gpus", "util", "power")}
    ld = {c: [] for c in ("drow", "class", "rate", "ttft", "tbt")}
    rt = {c: [] for c in ("pos", "class", "origin", "region", "rate", "share", "rtt")}
    tg = {c: [] for c in ("rrow", "deployment", "rate")}
    un = {c: [] for c in ("pos", "class", "origin", "rate")}
    for si, s in enumerate(p.slots):
        sl["index"].append(s.index)
        sl["start"].append(s.start)
        for f in SLOT_TOTALS:
            sl[f].append(getattr(s.totals, f))
        for di, d in enumerate(s.deployments):
            drow = len(dp["pos"])
            dp["pos"].append(si)
            dp["di"].append(di)
            dp["id"].append(d.id)
            dp["region"].append(d.region)
            dp["model"].append(d.model)
            dp["gpu"].append(d.gpu)
            dp["tp"].append(d.tp)
            dp["pp"].append(d.pp)
            dp["freq"].append(d.freq_mhz)
            dp["pool"].append(d.pool or "")
            dp["market"].append(d.market or "")
            dp["replicas"].append(over.get((si, di, "replicas"), d.replicas))
            dp["gpus"].append(over.get((si, di, "gpus"), d.gpus))
            dp["util"].append(d.utilization)
            dp["power"].append(d.power_w)
            for c in d.classes:
                ld["drow"].append(drow)
                ld["class"].append(c.class_)
                ld["rate"].append(c.rate_rps)
                ld["ttft"].append(c.ttft_ms)
                ld["tbt"].append(c.tbt_ms)
        for r in s.routing:
            rrow = len(rt["pos"])
            rt["pos"].append(si)
            rt["class"].append(r.class_)
            rt["origin"].append(r.origin)
            rt["region"].append(r.region)
            rt["rate"].append(r.rate_rps)
            rt["share"].append(r.share)
            rt["rtt"].append(r.rtt_ms)
            for q in r.targets:
                tg["rrow"].append(rrow)
                tg["deployment"].append(q.deployment)
                tg["rate"].append(q.rate_rps)
        for u in s.unserved:
            un["pos"].append(si)
            un["class"].append(u.class_)
            un["origin"].append(u.origin)
            un["rate"].append(u.rate_rps)
    ints = ("pos", "di", "drow", "rrow", "index", "tp", "pp")

    def f64(d: dict, floats: tuple) -> pd.DataFrame:
        return pd.DataFrame({c: np.asarray(v, dtype=float if c in floats else np.int64 if c in ints else object)
                             for c, v in d.items()})

    return {
        "slots": f64(sl, SLOT_TOTALS),
        "deps": f64(dp, ("freq", "replicas", "gpus", "util", "power")),
        "loads": f64(ld, ("rate", "ttft", "tbt")),
        "routes": f64(rt, ("rate", "share", "rtt")),
        "targets": f64(tg, ("rate",)),
        "unserved": f64(un, ("rate",)),
    }


# --------------------------------------------------------------------------------------------
# the check


def check(plan, scenario: Scenario, rel_tol: float = 1e-6, abs_tol: float = 1e-6) -> CheckReport:
    """Verify ``plan`` against ``scenario`` independently of the model and the solver.

    ``plan``: a :class:`~planner.plan.schema.Plan`, its dict or JSON text, or a path to a plan file
    (:class:`~planner.errors.PlanFileError` if it cannot be read or does not match the schema).
    ``scenario``: a :class:`~planner.scenario.loading.Scenario` (or a path, loaded with ``load_scenario``).
    Equalities and inequalities hold within ``max(abs_tol, rel_tol x magnitude)``.
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    p, over = _load_for_check(plan)
    stat = p.options.demand_statistic
    if stat != scenario.spec.options.demand_statistic and DEMAND_STATISTIC.fullmatch(stat):
        scenario = scenario.replace_options(demand_statistic=stat)  # the demand the plan was made for
    theta = p.options.burst_absorption
    if theta != scenario.spec.options.burst_absorption and math.isfinite(theta) and 0 < theta <= 1:
        scenario = scenario.replace_options(burst_absorption=theta)  # the bursts the plan was sized for
    return _Checker(p, over, scenario, _Out(rel_tol, abs_tol)).run()


_TABLES: "weakref.WeakKeyDictionary[Scenario, dict]" = weakref.WeakKeyDictionary()


def _scenario_tables(sc: Scenario) -> dict:
    """Per-class arrays, the profile table and the config table (base = a replica's zero-load power,
    the largest over the config's rows of active_power_w, or idle_power_w where a row has none)."""
    got = _TABLES.get(sc)
    if got is not None:
        return got
    spec = sc.spec
    t: dict[str, Any] = {}
    t["cls_model"] = np.array([k.model for k in spec.classes], dtype=object)
    t["cls_shape"] = np.array([k.shape for k in spec.classes], dtype=object)
    t["slo_ttft"] = np.array([k.slo.ttft_ms for k in spec.classes], dtype=float)
    t["slo_tbt"] = np.array([k.slo.tbt_ms for k in spec.classes], dtype=float)
    t["slo_stat"] = np.array([slo_statistic(k.slo) for k in spec.classes], dtype=object)
    t["slo_e2e"] = np.array([k.slo.e2e_ms if k.slo.e2e_ms is not None else np.nan for k in spec.classes],
                            dtype=float)
    out_tok = {s.name: s.output_tokens for s in spec.shapes}
    t["cls_out"] = np.array([out_tok.get(s, 1) for s in t["cls_shape"]], dtype=float)
    prof = sc.profiles.copy()
    prof["freqr"] = _sig(prof["freq_mhz"].to_numpy())
    prof["prow"] = np.arange(len(prof))
    t["prof"] = prof
    act = prof["active_power_w"].to_numpy(float)
    prof["zero_load_w"] = np.where(np.isnan(act), prof["idle_power_w"].to_numpy(float), act)
    cfg = prof.groupby(["model", "gpu", "tp", "pp", "freqr"], sort=True, as_index=False).agg(
        base=("zero_load_w", "max"), idle=("idle_power_w", "max"))
    cfg["ci"] = np.arange(len(cfg))
    lbar = []
    for k in spec.classes:
        dist = sc.shape_distribution(k.shape)
        lbar.append(float(out_tok.get(k.shape, 1)) if dist is None
                    else float(np.dot(dist["output_tokens"].to_numpy(float), dist["weight"].to_numpy(float))))
    t["cls_lbar"] = np.array(lbar, dtype=float)
    t["cfg"] = cfg
    _TABLES[sc] = t
    return t


class _Checker:
    def __init__(self, plan: Plan, over: dict, sc: Scenario, out: _Out):
        self.p, self.sc, self.o = plan, sc, out
        self.f = _flatten(plan, over)
        self.T = sc.n_slots
        self.h = sc.slot_hours
        self.secs = sc.slot_seconds
        po = plan.options
        self.U = float(po.max_utilization)
        self.unserved_ok = bool(po.unserved_allowed)
        self.penalty = float(po.unserved_penalty_per_request)
        self.__dict__.update(_scenario_tables(sc))
        self._cols: dict = {}
        self.scal = None  # the plan's options.scaling, parsed (check_scaling reports it when invalid)
        if po.scaling is not None:
            from planner.scenario.schema import Scaling

            try:
                self.scal = Scaling.model_validate(po.scaling)
            except ValidationError:
                self.scal = None
        self.vm_add: dict = {}

    def c(self, df: pd.DataFrame, col: str) -> np.ndarray:
        """A frame's column as an array, cached (messages index it row by row)."""
        key = (id(df), col)
        got = self._cols.get(key)
        if got is None:
            got = self._cols[key] = (df, df[col].to_numpy())
        return got[1]

    def cells(self, df: pd.DataFrame, i: int, *cols: str) -> tuple:
        return tuple(self.c(df, c)[i] for c in cols)

    # ------------------------------------------------------------------ driver
    def run(self) -> CheckReport:
        with np.errstate(all="ignore"):  # NaN/inf in a plan are reported, not warned about
            return self._run()

    def _run(self) -> CheckReport:
        self.check_header()
        self.resolve_slots()
        self.resolve_deployments()
        self.resolve_loads()
        self.resolve_routes()
        self.resolve_targets()
        self.resolve_unserved()
        self.check_integrality()
        self.check_demand()
        self.check_residency()
        self.check_balance()
        self.check_latency()
        self.check_capacity_power()
        self.check_headroom()
        self.check_availability()
        self.check_scaling()
        self.check_vms()
        self.check_replica_rules()
        rec = self.check_totals()
        self.check_objective()
        self.check_limits(rec)
        return self.o.report(rec)

    # ------------------------------------------------------------------ header
    def check_header(self) -> None:
        o, p, sc = self.o, self.p, self.sc
        o.count("fingerprint", 1)
        if p.scenario.fingerprint != sc.fingerprint:
            o.add("fingerprint", {"scenario": p.scenario.name},
                  f"the plan was made for a different scenario: plan fingerprint {p.scenario.fingerprint[:16]}..., "
                  f"scenario {sc.spec.name!r} ({sc.source}) has {sc.fingerprint[:16]}...")
        po = p.options
        o.count("options", 6)
        if po.tie_break not in ("routing", "lexicographic", "none"):
            o.add("options", {"field": "tie_break"},
                  f"options.tie_break {po.tie_break!r} is not one of 'routing', 'lexicographic', 'none'")
        if po.objective != p.objective.name:
            o.add("options", {"field": "objective"},
                  f"options.objective is {po.objective!r} but the objective reported is {p.objective.name!r}")
        if not (0 < po.max_utilization <= 1):
            o.add("options", {"field": "max_utilization"},
                  f"options.max_utilization {_n(po.max_utilization)} is outside (0, 1]")
        for name in ("budget_usd", "carbon_cap_kg", "unserved_penalty_per_request"):
            v = getattr(po, name)
            if v is not None and not (v >= 0):
                o.add("options", {"field": name}, f"options.{name} {_n(v)} is negative")
        if not (math.isfinite(po.burst_absorption) and 0 < po.burst_absorption <= 1):
            o.add("options", {"field": "burst_absorption"},
                  f"options.burst_absorption {_n(po.burst_absorption)} is outside (0, 1]")
        if not DEMAND_STATISTIC.fullmatch(po.demand_statistic):
            o.add("options", {"field": "demand_statistic"},
                  f"options.demand_statistic {po.demand_statistic!r} is not mean, peak or pNN")
        seen = set()
        o.count("options", len(po.capacity_factors))
        for i, f in enumerate(po.capacity_factors):
            key = (f.model, f.gpu, f.tp, f.pp, float(f"{f.freq_mhz:.10g}"), f.class_)
            if not (0 < f.factor <= 1):
                o.add("options", {"field": f"capacity_factors[{i}].factor"},
                      f"options.capacity_factors[{i}].factor {_n(f.factor)} is outside (0, 1]")
            if f.class_ not in self.sc.classes:
                o.add("options", {"field": f"capacity_factors[{i}].class"},
                      f"options.capacity_factors[{i}] names unknown class {f.class_!r}")
            if key in seen:
                o.add("options", {"field": f"capacity_factors[{i}]"},
                      f"options.capacity_factors[{i}] repeats an earlier entry for the same config and class")
            seen.add(key)
        # horizon
        o.count("reference", 1)
        hz = p.horizon or {}
        want = {"start": sc.spec.horizon.start, "slot_minutes": sc.spec.horizon.slot_minutes, "slots": self.T}
        bad = []
        if _parse_time(hz.get("start")) != want["start"]:
            bad.append(f"start {hz.get('start')!r} (scenario: {want['start'].strftime('%Y-%m-%dT%H:%M:%SZ')})")
        for k in ("slot_minutes", "slots"):
            if hz.get(k) != want[k]:
                bad.append(f"{k} {hz.get(k)!r} (scenario: {want[k]})")
        if bad:
            o.add("reference", {"field": "horizon"}, "plan horizon does not match the scenario: " + "; ".join(bad))

    # ------------------------------------------------------------------ slots
    def resolve_slots(self) -> None:
        o, sl = self.o, self.f["slots"]
        starts = self.sc.slot_starts
        n = len(sl)
        valid = np.zeros(n, bool)
        seen: set[int] = set()
        o.count("reference", n + self.T)
        for pos, (t, start) in enumerate(zip(sl["index"], sl["start"])):
            t = int(t)
            if not 0 <= t < self.T:
                o.add("reference", {"slot": t}, f"slot index {t} is outside 0..{self.T - 1}")
            elif t in seen:
                o.add("reference", {"slot": t}, f"slot {t} is listed more than once (position {pos})")
            else:
                seen.add(t)
                valid[pos] = True
                if _parse_time(start) != starts[t]:
                    o.add("reference", {"slot": t}, f"slot {t} starts {start!r}, scenario slot {t} starts "
                          f"{starts[t].strftime('%Y-%m-%dT%H:%M:%SZ')}")
        for t in range(self.T):
            if t not in seen:
                o.add("reference", {"slot": t}, f"slot {t} is missing from the plan")
        self.slot_valid = valid
        self.slot_t = sl["index"].to_numpy(np.int64)
        # rows of invalid slots are left out of every other check
        for name in ("deps", "routes", "unserved"):
            df = self.f[name]
            keep = valid[df["pos"].to_numpy()] if len(df) else np.zeros(0, bool)
            df = df[keep].copy()
            df["t"] = self.slot_t[df["pos"].to_numpy()] if len(df) else np.zeros(0, np.int64)
            self.f[name] = df

    # ------------------------------------------------------------------ deployments
    def resolve_deployments(self) -> None:
        o, sc = self.o, self.sc
        D = self.f["deps"]
        D["drow"] = D.index.to_numpy()
        D["r"] = _codes(D["region"], sc.regions)
        D["g"] = _codes(D["gpu"], sc.gpus)
        D["freqr"] = _sig(D["freq"].to_numpy()) if len(D) else np.zeros(0)
        D = D.merge(self.cfg, on=["model", "gpu", "tp", "pp", "freqr"], how="left")
        D["ci"] = D["ci"].fillna(-1).astype(np.int64)
        D.index = D["drow"].to_numpy()
        r, g = D["r"].to_numpy(), D["g"].to_numpy()
        ok_rg = (r >= 0) & (g >= 0)
        offered = np.zeros(len(D), bool)
        vo = sc.vm_offers
        if vo is None:
            offered[ok_rg] = ~np.isnan(sc.gpu_price[r[ok_rg], g[ok_rg]])
        else:  # with VMs: the region rents the GPU type on the deployment's market
            have = set(zip(vo["region"], vo["gpu"], vo["market"]))
            offered = np.array([(a, b, m or "on-demand") in have
                                for a, b, m in zip(D["region"], D["gpu"], D["market"])], bool)
            for row in D[D["market"] == ""].itertuples(index=False):
                o.add("reference", {"slot": row.t, "deployment": row.id, "field": "market"},
                      f"slot {row.t}: deployment {row.id} states no market (the scenario rents VMs)")
        D["offered"] = offered
        D["cfg_ok"] = D["ci"].to_numpy() >= 0
        o.count("reference", len(D))
        expect = [f"{reg}/{_config_key(m, gp, tp, pp, f)}" + ("|spot" if mk == "spot" else "")
                  + (f"#{pool}" if pool else "")
                  for reg, m, gp, tp, pp, f, pool, mk in
                  zip(D["region"], D["model"], D["gpu"], D["tp"], D["pp"], D["freq"], D["pool"], D["market"])]
        D["expect_id"] = np.array(expect, dtype=object)
        dup_id = D.duplicated(["t", "id"], keep="first").to_numpy()
        dup_cfg = D.duplicated(["t", "region", "model", "gpu", "tp", "pp", "freqr", "pool", "market"],
                               keep="first").to_numpy() & ~dup_id
        issue = ((r < 0) | ~D["cfg_ok"].to_numpy() | (ok_rg & ~offered)
                 | (D["id"].to_numpy() != D["expect_id"].to_numpy()))
        for row in D[issue].itertuples(index=False):
            w = {"slot": row.t, "deployment": row.id}
            cfgdesc = f"{row.model} on {row.gpu} tp{row.tp} pp{row.pp} at {_n(row.freq)} MHz"
            if row.r < 0:
                o.add("reference", w | {"region": row.region}, f"slot {row.t}: deployment {row.id}: "
                      f"unknown region {row.region!r}")
            if not row.cfg_ok:
                o.add("reference", w, f"slot {row.t}: deployment {row.id}: no profile for the config {cfgdesc}")
            if row.r >= 0 and row.g >= 0 and not row.offered:
                o.add("reference", w | {"region": row.region, "gpu": row.gpu},
                      f"slot {row.t}: deployment {row.id}: region {row.region} does not offer GPU type {row.gpu}"
                      + (f" on {row.market or 'on-demand'} VMs" if sc.vm_offers is not None else ""))
            if row.id != row.expect_id:
                o.add("reference", w, f"slot {row.t}: deployment id {row.id!r} should be {row.expect_id!r}")
        for i in np.nonzero(dup_id)[0]:
            row = D.iloc[i]
            o.add("reference", {"slot": row["t"], "deployment": row["id"]},
                  f"slot {row['t']}: deployment {row['id']} is listed more than once")
        for i in np.nonzero(dup_cfg)[0]:
            row = D.iloc[i]
            o.add("reference", {"slot": row["t"], "deployment": row["id"]},
                  f"slot {row['t']}: the config of deployment {row['id']} is deployed more than once in "
                  f"region {row['region']}")
        self.D = D

    # ------------------------------------------------------------------ class loads
    def resolve_loads(self) -> None:
        o, D = self.o, self.D
        L = self.f["loads"]
        L = L[L["drow"].isin(D.index)].copy()
        dep = D.loc[L["drow"].to_numpy()]
        for c in ("t", "id", "model", "gpu", "tp", "pp", "freqr", "cfg_ok"):
            L[c] = dep[c].to_numpy()
        L["k"] = _codes(L["class"], self.sc.classes)
        k = L["k"].to_numpy()
        known = k >= 0
        L["shape"] = np.where(known, self.cls_shape[np.maximum(k, 0)], None) if len(L) else []
        model_ok = np.zeros(len(L), bool)
        model_ok[known] = self.cls_model[k[known]] == L["model"].to_numpy()[known]
        L["model_ok"] = model_ok
        L = L.merge(self.prof[["model", "gpu", "tp", "pp", "freqr", "shape", "prow"]],
                    on=["model", "gpu", "tp", "pp", "freqr", "shape"], how="left")
        L["prow"] = L["prow"].fillna(-1).astype(np.int64)
        L["pair_ok"] = L["model_ok"].to_numpy() & (L["prow"].to_numpy() >= 0)
        pr = self.prof.iloc[np.maximum(L["prow"].to_numpy(), 0)] if len(self.prof) else None
        for src, dst in (("max_rps", "mu"), ("ttft_ms", "p_ttft"), ("tbt_ms", "p_tbt"), ("busy_power_w", "busy"),
                         ("service_ms", "p_svc")):
            L[dst] = np.where(L["pair_ok"], pr[src].to_numpy(), np.nan) if len(L) else np.zeros(0)
        L["p_stat"] = np.where(L["pair_ok"], pr["statistic"].to_numpy(), "mean") if len(L) else np.zeros(0, object)
        L["fac"] = self._factors(L)
        dup = L.duplicated(["drow", "class"], keep="first").to_numpy()
        o.count("reference", len(L))
        issue = (L["k"].to_numpy() < 0) | ~L["model_ok"].to_numpy() | (L["cfg_ok"].to_numpy(bool)
                                                                        & (L["prow"].to_numpy() < 0)) | dup
        cls_col = L["class"].to_numpy()
        for i in np.nonzero(issue)[0]:
            row = L.iloc[i]
            cls = cls_col[i]
            w = {"slot": row.t, "deployment": row.id, "class": cls}
            if row.k < 0:
                o.add("reference", w, f"slot {row.t}: deployment {row.id} serves unknown class {cls!r}")
            elif not row.model_ok:
                o.add("reference", w, f"slot {row.t}: deployment {row.id} runs model {row.model} but class {cls} "
                      f"needs model {self.cls_model[row.k]}")
            elif row.cfg_ok and row.prow < 0:
                o.add("reference", w, f"slot {row.t}: deployment {row.id}: no profile row for class {cls}'s "
                      f"shape {row['shape']}")
            if dup[i]:
                o.add("reference", w, f"slot {row.t}: deployment {row.id} lists class {cls} more than once")
        self.L = L
        # deployments whose every class has a profile row: their capacity and power can be recomputed
        bad = set(L.loc[~L["pair_ok"], "drow"].tolist())
        self.D["calc_ok"] = self.D["cfg_ok"].to_numpy() & ~self.D["drow"].isin(bad).to_numpy()

    # ------------------------------------------------------------------ routes, targets, unserved
    def resolve_routes(self) -> None:
        o, sc = self.o, self.sc
        R = self.f["routes"]
        R["rrow"] = R.index.to_numpy()
        R["k"] = _codes(R["class"], sc.classes)
        R["o"] = _codes(R["origin"], sc.origins)
        R["r"] = _codes(R["region"], sc.regions)
        o.count("reference", len(R))
        bad = (R["k"] < 0) | (R["o"] < 0) | (R["r"] < 0)
        for i in np.nonzero(bad.to_numpy())[0]:
            cls, org, reg, t = self.cells(R, i, "class", "origin", "region", "t")
            w = {"slot": t, "class": cls, "origin": org, "region": reg}
            what = [f"{n} {v!r}" for n, v, c in (("class", cls, "k"), ("origin", org, "o"), ("region", reg, "r"))
                    if self.c(R, c)[i] < 0]
            o.add("reference", w, f"slot {t}: route {cls} from {org} to {reg}: unknown " + ", ".join(what))
        dup = R.duplicated(["t", "class", "origin", "region"], keep="first").to_numpy()
        for i in np.nonzero(dup)[0]:
            cls, org, reg, t = self.cells(R, i, "class", "origin", "region", "t")
            o.add("reference", {"slot": t, "class": cls, "origin": org, "region": reg},
                  f"slot {t}: route {cls} from {org} to {reg} is listed more than once")
        self.R = R.set_index("rrow", drop=False)

    def resolve_targets(self) -> None:
        o, R, D = self.o, self.R, self.D
        Tg = self.f["targets"]
        Tg = Tg[Tg["rrow"].isin(R.index)].copy()
        rt = R.loc[Tg["rrow"].to_numpy()]
        for src, dst in (("t", "t"), ("class", "class"), ("origin", "origin"), ("region", "rregion"),
                         ("k", "k"), ("o", "o"), ("r", "rr")):
            Tg[dst] = rt[src].to_numpy()
        look = D[["t", "id", "drow"]].drop_duplicates(["t", "id"], keep="first").rename(columns={"id": "deployment"})
        Tg = Tg.merge(look, on=["t", "deployment"], how="left")
        Tg["drow"] = Tg["drow"].fillna(-1).astype(np.int64)
        found = Tg["drow"].to_numpy() >= 0
        dd = D.loc[np.where(found, Tg["drow"].to_numpy(), D.index[0] if len(D) else 0)] if len(D) else None
        Tg["dregion"] = np.where(found, dd["region"].to_numpy(), None) if dd is not None else None
        Tg["dr"] = np.where(found, dd["r"].to_numpy(), -1) if dd is not None else -1
        served = self.L[["drow", "class"]].drop_duplicates().assign(serves=True)
        Tg = Tg.merge(served, on=["drow", "class"], how="left")
        Tg["serves"] = Tg["serves"].astype(object).fillna(False).astype(bool)
        o.count("reference", len(Tg))
        reg_bad = found & (Tg["dregion"].to_numpy() != Tg["rregion"].to_numpy())
        issue = ~found | reg_bad | (found & ~Tg["serves"].to_numpy())
        for i in np.nonzero(issue)[0]:
            t, cls, org, reg, dep = self.cells(Tg, i, "t", "class", "origin", "rregion", "deployment")
            w = {"slot": t, "class": cls, "origin": org, "region": reg, "deployment": dep}
            head = f"slot {t}: route {cls} from {org} to {reg}: target {dep}"
            if not found[i]:
                o.add("reference", w, f"{head} is not a deployment of slot {t}")
            elif self.c(Tg, "dregion")[i] != reg:
                o.add("reference", w, f"{head} is in region {self.c(Tg, 'dregion')[i]}, not {reg}")
            elif not self.c(Tg, "serves")[i]:
                o.add("reference", w, f"{head} does not serve class {cls}")
        self.Tg = Tg

    def resolve_unserved(self) -> None:
        o, sc = self.o, self.sc
        U = self.f["unserved"]
        U["k"] = _codes(U["class"], sc.classes)
        U["o"] = _codes(U["origin"], sc.origins)
        o.count("reference", len(U))
        for i in np.nonzero(((U["k"] < 0) | (U["o"] < 0)).to_numpy())[0]:
            cls, org, t = self.c(U, "class")[i], self.c(U, "origin")[i], self.c(U, "t")[i]
            o.add("reference", {"slot": t, "class": cls, "origin": org},
                  f"slot {t}: unserved rate for unknown class or origin ({cls!r} from {org!r})")
        for i in np.nonzero(U.duplicated(["t", "class", "origin"], keep="first").to_numpy())[0]:
            cls, org, t = self.c(U, "class")[i], self.c(U, "origin")[i], self.c(U, "t")[i]
            o.add("reference", {"slot": t, "class": cls, "origin": org},
                  f"slot {t}: unserved rate of {cls} from {org} is listed more than once")
        self.U_ = U

    # ------------------------------------------------------------------ integrality
    def check_integrality(self) -> None:
        o, D = self.o, self.D
        o.count("integrality", 2 * len(D))
        rep = D["replicas"].to_numpy(float)
        gp = D["gpus"].to_numpy(float)
        per = (D["tp"] * D["pp"]).to_numpy(float)
        with np.errstate(invalid="ignore"):
            frac = ~(np.abs(rep - np.round(rep)) <= INT_TOL) | ~(rep >= 0)
            gbad = ~(np.abs(gp - rep * per) <= INT_TOL)
        for i in np.nonzero(frac)[0]:
            t, did = self.c(D, "t")[i], self.c(D, "id")[i]
            dist = abs(rep[i] - round(rep[i])) if math.isfinite(rep[i]) else math.inf
            o.add("integrality", {"slot": t, "deployment": did},
                  f"slot {t}: deployment {did} has {_n(rep[i])} replicas (must be a whole number >= 0)",
                  max(dist, -rep[i]) if math.isfinite(rep[i]) else math.inf)
        for i in np.nonzero(gbad)[0]:
            t, did = self.c(D, "t")[i], self.c(D, "id")[i]
            o.add("integrality", {"slot": t, "deployment": did},
                  f"slot {t}: deployment {did} reports {_n(gp[i])} GPUs but {_n(rep[i])} replicas x tp "
                  f"{self.c(D, 'tp')[i]} x pp {self.c(D, 'pp')[i]} = {_n(rep[i] * per[i])}",
                  abs(gp[i] - rep[i] * per[i]))
        self.D["gpus_dec"] = rep * per

    # ------------------------------------------------------------------ demand
    def check_demand(self) -> None:
        o, sc = self.o, self.sc
        R, U, Tg, L = self.R, self.U_, self.Tg, self.L
        # signs
        n_rates = len(R) + len(U) + len(Tg) + len(L)
        o.count("demand_served", n_rates)
        for name, df, desc in (
            ("route", R, lambda i: "route {} from {} to {}".format(*self.cells(R, i, "class", "origin", "region"))),
            ("target", Tg, lambda i: "route {} from {} to {}, target {}".format(
                *self.cells(Tg, i, "class", "origin", "rregion", "deployment"))),
            ("class", L, lambda i: f"deployment {self.c(L, 'id')[i]}, class {self.c(L, 'class')[i]}"),
            ("unserved", U, lambda i: f"unserved {self.c(U, 'class')[i]} from {self.c(U, 'origin')[i]}"),
        ):
            if not len(df):
                continue
            rate = df["rate"].to_numpy(float)
            with np.errstate(invalid="ignore"):
                neg = ~(rate >= 0) | ~np.isfinite(rate)
            for i in np.nonzero(neg)[0]:
                t = self.c(df, "t")[i]
                w = {"slot": t}
                for c in ("class", "origin", "region", "deployment"):
                    if c in df.columns:
                        w[c] = self.c(df, c)[i]
                if name == "target":
                    w["region"] = self.c(df, "rregion")[i]
                if name == "class":
                    w["deployment"] = self.c(df, "id")[i]
                o.add("demand_served", w, f"slot {t}: {desc(i)} has rate {_n(rate[i])} req/s (must be >= 0)",
                      -rate[i] if math.isfinite(rate[i]) else math.inf)
        # unserved only when allowed
        if not self.unserved_ok and len(U):
            rate = U["rate"].to_numpy(float)
            for i in np.nonzero(rate > 0)[0]:
                t = self.c(U, "t")[i]
                o.add("demand_served", {"slot": t, "class": self.c(U, "class")[i], "origin": self.c(U, "origin")[i]},
                      f"slot {t}: {_n(rate[i])} req/s of {self.c(U, 'class')[i]} from {self.c(U, 'origin')[i]} left "
                      f"unserved, but the plan's options do not allow unserved demand", rate[i])
        # conservation
        K, O, T = sc.demand.shape
        routed = np.zeros((K, O, T))
        uns = np.zeros((K, O, T))
        m = (R["k"] >= 0).to_numpy() & (R["o"] >= 0).to_numpy()
        np.add.at(routed, (R["k"].to_numpy()[m], R["o"].to_numpy()[m], R["t"].to_numpy()[m]),
                  R["rate"].to_numpy(float)[m])
        m = (U["k"] >= 0).to_numpy() & (U["o"] >= 0).to_numpy()
        np.add.at(uns, (U["k"].to_numpy()[m], U["o"].to_numpy()[m], U["t"].to_numpy()[m]),
                  U["rate"].to_numpy(float)[m])
        self.uns_rate = uns
        tot = routed + uns
        d = sc.demand
        cell = (d != 0) | (tot != 0) | ~np.isfinite(tot)
        o.count("demand_served", int(cell.sum()))
        bad = cell & o.ne(tot, d)
        for k, oo, t in zip(*np.nonzero(bad)):
            o.add("demand_served", {"slot": t, "class": sc.classes[k], "origin": sc.origins[oo]},
                  f"slot {t}: class {sc.classes[k]} from {sc.origins[oo]}: routed {_n(routed[k, oo, t])} + unserved "
                  f"{_n(uns[k, oo, t])} = {_n(tot[k, oo, t])} req/s, demand is {_n(d[k, oo, t])} req/s",
                  abs(tot[k, oo, t] - d[k, oo, t]))

    # ------------------------------------------------------------------ residency
    def check_residency(self) -> None:
        o, sc, R = self.o, self.sc, self.R
        m = ((R["o"] >= 0) & (R["r"] >= 0)).to_numpy()
        o.count("data_residency", int(m.sum()))
        oo, rr = R["o"].to_numpy(), R["r"].to_numpy()
        bad = np.zeros(len(R), bool)
        bad[m] = ~sc.allowed[oo[m], rr[m]]
        for i in np.nonzero(bad)[0]:
            t, cls, org, reg = self.cells(R, i, "t", "class", "origin", "region")
            why = ("no RTT is known" if np.isnan(sc.rtt[oo[i], rr[i]])
                   else f"region {reg} is not among the origin's allowed regions")
            o.add("data_residency", {"slot": t, "class": cls, "origin": org, "region": reg},
                  f"slot {t}: {_n(self.c(R, 'rate')[i])} req/s of {cls} from {org} routed to {reg}, where {org} may "
                  f"not be served ({why})", float(self.c(R, "rate")[i]))

    # ------------------------------------------------------------------ balance
    def check_balance(self) -> None:
        o, R, Tg, L = self.o, self.R, self.Tg, self.L
        # each route = sum of its targets
        tsum = Tg.groupby("rrow")["rate"].sum() if len(Tg) else pd.Series(dtype=float)
        got = tsum.reindex(R.index, fill_value=0.0).to_numpy(float)
        rate = R["rate"].to_numpy(float)
        o.count("route_balance", len(R))
        for i in np.nonzero(o.ne(got, rate))[0]:
            t, cls, org, reg = self.cells(R, i, "t", "class", "origin", "region")
            o.add("route_balance", {"slot": t, "class": cls, "origin": org, "region": reg},
                  f"slot {t}: route {cls} from {org} to {reg} carries {_n(rate[i])} req/s but its targets add up "
                  f"to {_n(got[i])} req/s", abs(got[i] - rate[i]))
        # each (deployment, class) rate = sum of the targets pointing at it
        tf = Tg[Tg["drow"] >= 0]
        ts = tf.groupby(["drow", "class"])["rate"].sum() if len(tf) else pd.Series(dtype=float)
        ls = L.groupby(["drow", "class"])["rate"].sum() if len(L) else pd.Series(dtype=float)
        if not len(ls):
            return
        tgt = ts.reindex(ls.index, fill_value=0.0).to_numpy(float)
        lv = ls.to_numpy(float)
        # where a target of (slot, class, region) names no deployment (a reference violation), the
        # balance of that region's deployments for the class cannot be told apart from it: skip them
        lost = Tg.loc[Tg["drow"] < 0, ["t", "class", "rregion"]].drop_duplicates()
        drows = ls.index.get_level_values(0).to_numpy()
        keys = pd.DataFrame({"t": self.D.loc[drows, "t"].to_numpy(), "class": ls.index.get_level_values(1),
                             "rregion": self.D.loc[drows, "region"].to_numpy()})
        skip = keys.merge(lost.assign(lost=True), on=["t", "class", "rregion"], how="left")["lost"].notna().to_numpy()
        o.count("route_balance", int((~skip).sum()))
        for i in np.nonzero(~skip & o.ne(lv, tgt))[0]:
            drow, cls = ls.index[i]
            t, did = self.D.at[drow, "t"], self.D.at[drow, "id"]
            o.add("route_balance", {"slot": t, "deployment": did, "class": cls},
                  f"slot {t}: deployment {did} serves {_n(lv[i])} req/s of {cls} but the routes' targets send it "
                  f"{_n(tgt[i])} req/s", abs(lv[i] - tgt[i]))

    # ------------------------------------------------------------------ latency
    def check_latency(self) -> None:
        o, sc, R, L, Tg, D = self.o, self.sc, self.R, self.L, self.Tg, self.D
        # route RTT = scenario RTT
        m = ((R["o"] >= 0) & (R["r"] >= 0)).to_numpy()
        rtt_sc = np.full(len(R), np.nan)
        rtt_sc[m] = sc.rtt[R["o"].to_numpy()[m], R["r"].to_numpy()[m]]
        m = m & (~np.isnan(rtt_sc))
        o.count("latency_ttft", int(m.sum()))
        rr = R["rtt"].to_numpy(float)
        for i in np.nonzero(m & o.ne(rr, rtt_sc))[0]:
            t, cls, org, reg = self.cells(R, i, "t", "class", "origin", "region")
            o.add("latency_ttft", {"slot": t, "class": cls, "origin": org, "region": reg},
                  f"slot {t}: route {cls} from {org} to {reg} reports RTT {_n(rr[i])} ms, the scenario's is "
                  f"{_n(rtt_sc[i])} ms", abs(rr[i] - rtt_sc[i]))
        # reported TTFT/TBT = profile; TBT within SLO
        P = L[L["pair_ok"]]
        o.count("latency_ttft", len(P))
        o.count("latency_tbt", 2 * len(P))
        for col, pcol, fam, what in (("ttft", "p_ttft", "latency_ttft", "TTFT"),
                                     ("tbt", "p_tbt", "latency_tbt", "TBT")):
            a, b = P[col].to_numpy(float), P[pcol].to_numpy(float)
            for i in np.nonzero(o.ne(a, b))[0]:
                t, did, cls = self.c(P, "t")[i], self.c(P, "id")[i], self.c(P, "class")[i]
                o.add(fam, {"slot": t, "deployment": did, "class": cls},
                      f"slot {t}: deployment {did} reports {what} {_n(a[i])} ms for class {cls}, the profile says "
                      f"{_n(b[i])} ms", abs(a[i] - b[i]))
        k = P["k"].to_numpy()
        # a class stating a percentile is served only from rows computed for it or a stricter statistic
        if len(P):
            need = self.slo_stat[k]
            weak = np.array([n is not None and statistic_rank(s) < statistic_rank(n)
                             for n, s in zip(need, P["p_stat"].to_numpy())], dtype=bool)
            o.count("latency_ttft", int(np.sum([n is not None for n in need])))
            for i in np.nonzero(weak)[0]:
                t, did, cls = self.c(P, "t")[i], self.c(P, "id")[i], self.c(P, "class")[i]
                o.add("latency_ttft", {"slot": t, "deployment": did, "class": cls},
                      f"slot {t}: deployment {did} serves class {cls}, whose SLO is stated at {need[i]}, from a "
                      f"profile row computed for {P['p_stat'].to_numpy()[i]}", 1.0)
        ptbt = P["p_tbt"].to_numpy(float)
        served = P["rate"].to_numpy(float) > 0
        bad = served & o.gt(ptbt, self.slo_tbt[k] if len(k) else np.zeros(0))
        for i in np.nonzero(bad)[0]:
            t, did, cls = self.c(P, "t")[i], self.c(P, "id")[i], self.c(P, "class")[i]
            o.add("latency_tbt", {"slot": t, "deployment": did, "class": cls},
                  f"slot {t}: deployment {did} serves class {cls} at TBT {_n(ptbt[i])} ms, above its SLO "
                  f"{_n(self.slo_tbt[k[i]])} ms", ptbt[i] - self.slo_tbt[k[i]])
        # end to end, per target: network RTT (origin -> deployment's region) + profiled latency
        use = ((Tg["drow"] >= 0) & (Tg["k"] >= 0) & (Tg["o"] >= 0) & (Tg["dr"] >= 0)).to_numpy()
        use = use & (Tg["rate"].to_numpy(float) > 0)
        X = Tg[use].copy()
        if not len(X):
            return
        dep = D.loc[X["drow"].to_numpy()]
        for c in ("model", "gpu", "tp", "pp", "freqr"):
            X[c] = dep[c].to_numpy()
        X["shape"] = self.cls_shape[X["k"].to_numpy()]
        X = X[(self.cls_model[X["k"].to_numpy()] == X["model"].to_numpy())]
        X = X.merge(self.prof[["model", "gpu", "tp", "pp", "freqr", "shape", "ttft_ms", "tbt_ms"]],
                    on=["model", "gpu", "tp", "pp", "freqr", "shape"], how="inner")
        X["net"] = sc.rtt[X["o"].to_numpy(), X["dr"].to_numpy()]
        X = X[~np.isnan(X["net"].to_numpy())]
        if not len(X):
            return
        k = X["k"].to_numpy()
        net, ttft, tbt = X["net"].to_numpy(), X["ttft_ms"].to_numpy(), X["tbt_ms"].to_numpy()
        lat = net + ttft
        o.count("latency_ttft", len(X))
        for i in np.nonzero(o.gt(lat, self.slo_ttft[k]))[0]:
            t, cls, org, did = self.cells(X, i, "t", "class", "origin", "deployment")
            o.add("latency_ttft", {"slot": t, "class": cls, "origin": org, "region": self.c(X, "rregion")[i],
                                   "deployment": did},
                  f"slot {t}: {_n(self.c(X, 'rate')[i])} req/s of {cls} from {org} on {did}: RTT {_n(net[i])} + TTFT "
                  f"{_n(ttft[i])} = {_n(lat[i])} ms exceeds the TTFT SLO {_n(self.slo_ttft[k[i]])} ms",
                  lat[i] - self.slo_ttft[k[i]])
        e2e_slo = self.slo_e2e[k]
        has = ~np.isnan(e2e_slo)
        o.count("latency_e2e", int(has.sum()))
        e2e = lat + (self.cls_out[k] - 1) * tbt
        for i in np.nonzero(has & o.gt(e2e, np.where(has, e2e_slo, 0.0)))[0]:
            t, cls, org, did = self.cells(X, i, "t", "class", "origin", "deployment")
            o.add("latency_e2e", {"slot": t, "class": cls, "origin": org, "region": self.c(X, "rregion")[i],
                                  "deployment": did},
                  f"slot {t}: {_n(self.c(X, 'rate')[i])} req/s of {cls} from {org} on {did}: RTT {_n(net[i])} + TTFT "
                  f"{_n(ttft[i])} + {int(self.cls_out[k[i]] - 1)} x TBT {_n(tbt[i])} = {_n(e2e[i])} ms exceeds the "
                  f"e2e SLO {_n(e2e_slo[i])} ms", e2e[i] - e2e_slo[i])

    def _factors(self, L: pd.DataFrame) -> np.ndarray:
        """The plan's capacity factor of each load row (1 where none; a factor outside (0, 1] is reported
        under options and not applied)."""
        f = [(x.model, x.gpu, int(x.tp), int(x.pp), float(f"{x.freq_mhz:.10g}"), x.class_, float(x.factor))
             for x in self.p.options.capacity_factors if 0 < x.factor <= 1]
        if not f or not len(L):
            return np.ones(len(L))
        F = pd.DataFrame(f, columns=["model", "gpu", "tp", "pp", "freqr", "class", "fac"]).drop_duplicates(
            ["model", "gpu", "tp", "pp", "freqr", "class"])
        m = L[["model", "gpu", "tp", "pp", "freqr", "class"]].merge(F, how="left",
                                                                      on=["model", "gpu", "tp", "pp", "freqr", "class"])
        return m["fac"].fillna(1.0).to_numpy(float)

    # ------------------------------------------------------------------ capacity and power
    def check_capacity_power(self) -> None:
        o, D, L = self.o, self.D, self.L
        P = L[L["pair_ok"]].copy()
        sc = self.sc
        base = D["base"].to_numpy(float)
        P["base"] = D.loc[P["drow"].to_numpy(), "base"].to_numpy(float) if len(P) else np.zeros(0)
        kk, tt = P["k"].to_numpy(np.int64), P["t"].to_numpy(np.int64)
        beta = sc.burst[kk, tt] if len(P) else np.zeros(0)
        P["u"] = P["rate"] / P["mu"]
        # against the usable capacity: max_rps x capacity factor, each req/s counted beta times
        P["ucap"] = P["u"] / P["fac"] * beta
        # the line from base power at zero load to busy power at max_rps (flat where busy < base)
        P["marg"] = np.maximum(P["busy"] - P["base"], 0.0) * P["u"]
        floor = D["idle"].to_numpy(float) if sc.bursty else base
        if sc.bursty and len(P):
            # replicas idle without work: each req/s adds (base - idle) x busy share / x, x = U x usable
            # capacity / beta, the busy share at m = x x service (service: the row's service_ms, else
            # TTFT + (mean output - 1) x TBT) under the class's rate fluctuations
            res = (P["p_ttft"].to_numpy(float) + np.maximum(self.cls_lbar[kk] - 1.0, 0.0)
                   * P["p_tbt"].to_numpy(float)) / 1000.0
            svc = P["p_svc"].to_numpy(float) / 1000.0
            res = np.where(np.isfinite(svc), svc, res)
            x = self.U * P["mu"].to_numpy(float) * P["fac"].to_numpy(float) / beta
            lam = sc.demand.sum(axis=1)[kk, tt]
            b = np.zeros(len(P))
            for k, kc in enumerate(sc.spec.classes):
                m = kk == k
                if m.any():
                    b[m] = busy_share(sc.class_arrivals(kc.name), x[m] * res[m], lam[m] * res[m])
            idle = D.loc[P["drow"].to_numpy(), "idle"].to_numpy(float)
            P["marg"] += np.maximum(P["base"].to_numpy(float) - idle, 0.0) * b / x * P["rate"].to_numpy(float)
            # pools: a class is light on a config when a replica at the operating point (the class's
            # mean burst factor over its slots with demand) holds under one request; a deployment
            # serves one kind, labelled light or saturated when its config serves both in the plan
            lam_k = sc.demand.sum(axis=1)
            bbar = np.array([float(sc.burst[k, lam_k[k] > 0].mean()) if (lam_k[k] > 0).any() else 1.0
                             for k in range(len(sc.classes))])
            light = (self.U * P["mu"].to_numpy(float) * P["fac"].to_numpy(float) * res / bbar[kk]) < 1.0
            kinds = pd.DataFrame({"drow": P["drow"].to_numpy(), "light": light}).groupby("drow")["light"].agg(
                ["any", "all"])
            for drow, row in kinds.iterrows():
                pool = D.at[drow, "pool"]
                t, did = D.at[drow, "t"], D.at[drow, "id"]
                o.count("replica_capacity", 1)
                mixed = row["any"] and not row["all"]
                wrong = (pool == "light" and not row["all"]) or (pool == "saturated" and row["any"])
                if mixed or wrong:
                    o.add("replica_capacity", {"slot": t, "deployment": did, "field": "pool"},
                          f"slot {t}: deployment {did} ({pool or 'no pool'}) serves "
                          + ("light and saturated classes together" if mixed else
                             f"{'saturated' if pool == 'light' else 'light'} classes"))
        self.P = P
        sums = P.groupby("drow")[["u", "ucap", "marg"]].sum().reindex(D.index, fill_value=0.0)
        load, marg = sums["u"].to_numpy(float), sums["marg"].to_numpy(float)
        load_cap = sums["ucap"].to_numpy(float)
        rep = D["replicas"].to_numpy(float)
        calc = D["calc_ok"].to_numpy(bool)
        power = np.where(calc, floor * rep + marg, np.nan)
        self.D["power_rec"] = power
        o.count("replica_capacity", 2 * int(calc.sum()))
        o.count("power", int(calc.sum()))
        self.D["loss"] = self.spot_loss(D)
        cap = self.U * rep * (1.0 - self.D["loss"].to_numpy(float))
        for i in np.nonzero(calc & o.gt(load_cap, cap))[0]:
            t, did = self.c(D, "t")[i], self.c(D, "id")[i]
            derated = " with the plan's capacity factors" if abs(load_cap[i] - load[i]) > 1e-12 else ""
            o.add("replica_capacity", {"slot": t, "deployment": did},
                  f"slot {t}: deployment {did} carries {_n(load_cap[i])} replicas' worth of load{derated} on "
                  f"{_n(rep[i])} replicas (max utilisation {_n(self.U)}"
                  + (f", spot time lost to reclaims {_n(D['loss'].iat[i])}" if D["loss"].iat[i] > 0 else "")
                  + f": at most {_n(cap[i])})", load_cap[i] - cap[i])
        util = D["util"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            want = np.where(rep > 0, load / np.where(rep > 0, rep, 1.0), 0.0)
        uchk = calc & ((rep > 0) | (load == 0))
        for i in np.nonzero(uchk & o.ne(util, want))[0]:
            t, did = self.c(D, "t")[i], self.c(D, "id")[i]
            o.add("replica_capacity", {"slot": t, "deployment": did, "field": "utilization"},
                  f"slot {t}: deployment {did} reports utilisation {_n(util[i])}, its load gives {_n(want[i])}",
                  abs(util[i] - want[i]))
        pw = D["power"].to_numpy(float)
        for i in np.nonzero(calc & o.ne(pw, power))[0]:
            t, did = self.c(D, "t")[i], self.c(D, "id")[i]
            o.add("power", {"slot": t, "deployment": did},
                  f"slot {t}: deployment {did} reports {_n(pw[i])} W, base {_n(floor[i])} W x {_n(rep[i])} replicas "
                  + f"+ load-dependent {_n(marg[i])} W = {_n(power[i])} W", abs(pw[i] - power[i]))

    def startup_s(self, model: str, with_provision: bool = True) -> float:
        """Seconds a new replica of ``model`` takes (the plan's options.scaling: provisioning, plus the
        weights at 2 bytes per parameter over load_gb_per_s); 0 without scaling."""
        scal = self.scal
        if scal is None:
            return 0.0
        secs = float(scal.provision_s) if with_provision else 0.0
        size = {m.name: m.params_billion for m in self.sc.spec.models}.get(model)
        if scal.load_gb_per_s is not None and size is not None:
            secs += 2.0 * float(size) / float(scal.load_gb_per_s)
        return secs

    def spot_restart_s(self, model: str) -> float:
        """Seconds a reclaimed spot replica of ``model`` is down when its VM type states no
        ``spot_restart_s``: its startup time, or the scenario's ``spot_restart_basis`` when set."""
        basis = getattr(self.sc, "spot_restart_basis", None)
        if basis is not None:
            return float(basis.get(model, 0.0))
        return self.startup_s(model)

    def spot_loss(self, D: pd.DataFrame) -> np.ndarray:
        """Per deployment: the expected share of time its spot replicas are down, the largest
        interruptions per hour x restart hours (spot_restart_s, else the model's startup) among the
        region's spot VMs of its GPU type, at most 0.99; 0 on demand."""
        out = np.zeros(len(D))
        vo = self.sc.vm_offers
        if vo is None or not len(D):
            return out
        spot = vo[vo["market"] == "spot"]
        for i, (reg, gpu, mk, model) in enumerate(zip(D["region"], D["gpu"], D["market"], D["model"])):
            if mk != "spot":
                continue
            for row in spot[(spot["region"] == reg) & (spot["gpu"] == gpu)].itertuples(index=False):
                rs = row.restart_s if np.isfinite(row.restart_s) else self.spot_restart_s(model)
                out[i] = max(out[i], min(row.rate * rs / 3600.0, 0.99))
        return out

    # ------------------------------------------------------------------ headroom
    def check_headroom(self) -> None:
        """Each slot's headroom entries: the class's demand, its burst factor, and its surge margin (the
        lowest over the deployments serving it of 1 + (1 - load) / load_k, loads as shares of the
        replicas' usable capacity, max_rps x capacity factor)."""
        o, sc, D, P = self.o, self.sc, self.D, self.P
        rep = D["replicas"].to_numpy(float)
        share = np.zeros(len(P))
        if len(P):
            r_of = rep[D.index.get_indexer(P["drow"].to_numpy())]
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(r_of > 0, (P["u"] / P["fac"]).to_numpy(float) / r_of, np.nan)
        tot = pd.Series(share, index=P.index).groupby(P["drow"]).transform("sum").to_numpy(float) if len(P) else share
        with np.errstate(divide="ignore", invalid="ignore"):
            surge_row = np.where(share > 0, 1.0 + (1.0 - tot) / share, np.nan)
        surge: dict[tuple[int, int], float] = {}
        for t, k, v in zip(P["t"].to_numpy(np.int64) if len(P) else [], P["k"].to_numpy(np.int64) if len(P) else [],
                           surge_row):
            if np.isfinite(v):
                surge[(t, k)] = min(surge.get((t, k), np.inf), float(v))
        kix = {n: i for i, n in enumerate(sc.classes)}
        # plans written before the headroom section have none at all (not checked); a plan that has
        # some must list every class with demand once per slot
        complete = any(sl.headroom for sl in self.p.slots)
        planned = np.where(sc.demand >= RATE_RESOLUTION, sc.demand, 0.0)  # demand below resolution: unplanned
        for t, sl in enumerate(self.p.slots[:self.T] if complete else []):
            named = [h.class_ for h in sl.headroom]
            for k, name in enumerate(sc.classes):
                want = planned[k, :, t].sum() > 0
                o.count("replica_capacity", 1)
                if named.count(name) != (1 if want else 0):
                    o.add("replica_capacity", {"slot": t, "class": name, "field": "headroom"},
                          f"slot {t}: headroom lists class {name} {named.count(name)} time(s); it has "
                          f"{'demand, so once' if want else 'no demand, so never'}")
        # a slot with a deployment the checker cannot compute (reported under reference) has no surge to compare
        unknown = set(D.loc[~D["calc_ok"].to_numpy(bool), "t"].tolist()) if len(D) else set()
        for t, sl in enumerate(self.p.slots[:self.T]):
            for h in sl.headroom:
                k = kix.get(h.class_)
                w = {"slot": t, "class": h.class_, "field": "headroom"}
                o.count("replica_capacity", 1)
                if k is None:
                    o.add("reference", w, f"slot {t}: headroom names unknown class {h.class_!r}")
                    continue
                want = {"demand_rps": float(planned[k, :, t].sum()), "burst_factor": float(sc.burst[k, t])}
                for fld, val in want.items():
                    got = float(getattr(h, fld))
                    if o.ne(np.array([got]), np.array([val]))[0]:
                        o.add("replica_capacity", w | {"field": f"headroom.{fld}"},
                              f"slot {t}: headroom of {h.class_} states {fld} {_n(got)}, the scenario gives {_n(val)}",
                              abs(got - val))
                sg = surge.get((t, k))
                if t in unknown:
                    continue
                differs = (sg is None) != (h.surge is None)
                if sg is not None and h.surge is not None:
                    differs = bool(o.ne(np.array([h.surge]), np.array([sg]))[0])
                if differs:
                    gap = 0.0 if sg is None or h.surge is None else abs(h.surge - sg)
                    o.add("replica_capacity", w | {"field": "headroom.surge"},
                          f"slot {t}: headroom of {h.class_} states surge {h.surge}, its deployments' loads give "
                          f"{'none' if sg is None else _n(sg)}", gap)

    # ------------------------------------------------------------------ fleet over time
    def check_scaling(self) -> None:
        """With the plan's ``options.scaling``: per deployment base (region, model, GPU, TP, PP, market:
        the actions' ids; a replica changing only its clock or pool is not restarted), the replicas of consecutive slots (0
        where it is absent; the initial fleet before the first) change by exactly the slot's actions
        (started = increase, stopped = decrease), within ``max_change``; the replicas started in the last
        ``min_up_slots`` slots still run; and each start costs its startup time (provision_s plus the
        model's weights at load_gb_per_s) of its GPUs at their price and idle power, which the totals add
        (``scaling_gpu_hours``, ``replicas_started``/``stopped`` checked here)."""
        o, sc, D, p, T = self.o, self.sc, self.D, self.p, self.T
        self.scaling_add = {}
        cfg = p.options.scaling
        acts = [(t, sl.actions) for t, sl in enumerate(p.slots[:T])]
        if cfg is None:
            for t, a in acts:
                if a is not None:
                    o.add("options", {"slot": t, "field": "actions"},
                          f"slot {t} lists scaling actions but the plan has no options.scaling")
            return
        try:
            from planner.scenario.schema import Scaling

            scal = Scaling.model_validate(cfg)
        except ValidationError as e:
            o.add("options", {"field": "scaling"}, f"options.scaling is invalid: {e.errors()[0]['msg']}")
            return

        vm_mode = sc.vm_offers is not None

        def startup_h(model):  # with VMs, provisioning is paid per VM started (check_vms)
            return self.startup_s(model, with_provision=not vm_mode) / 3600.0

        def gpu_price(r, g, market):
            if not vm_mode:
                return sc.gpu_price[r, g]
            vo = sc.vm_offers
            m = vo[(vo["r"] == r) & (vo["g"] == g) & (vo["market"] == market)]
            return float((m["price"] / m["gpus"]).min()) if len(m) else float("nan")

        # replicas per (deployment base, slot), and what each base is: clock and pool changes are free
        prof = sc.profiles
        base_idle = (prof.groupby(["model", "gpu", "tp", "pp"])["idle_power_w"].max().to_dict() if len(prof) else {})
        reps: dict[str, np.ndarray] = {}
        info: dict[str, tuple] = {}
        for row in D.itertuples(index=False):
            if not (0 <= row.t < T):
                continue
            bid = f"{row.region}/{base_key(row.model, row.gpu, row.tp, row.pp, row.market == 'spot')}"
            reps.setdefault(bid, np.zeros(T))[row.t] += float(row.replicas)
            info[bid] = (row.r, row.g, row.model, float(row.gpus_dec) / max(float(row.replicas), 1.0),
                         float(base_idle.get((row.model, row.gpu, int(row.tp), int(row.pp)), np.nan)),
                         row.market or "on-demand")
        init: dict[str, float] = {}
        for x in scal.initial:
            key = f"{x.region}/{base_key(x.model, x.gpu, x.tp, x.pp, x.market == 'spot')}"
            init[key] = init.get(key, 0.0) + float(x.replicas)
        stated: dict[tuple[int, str], tuple[int, int]] = {}
        for t, a in acts:
            if a is None:
                o.add("options", {"slot": t, "field": "actions"}, f"slot {t} has no actions list (options.scaling is set)")
                continue
            for q in a:
                stated[(t, q.deployment)] = (q.started, q.stopped)
        ids = sorted(set(reps) | set(init) | {k for _, k in stated})
        L = int(scal.min_up_slots)
        add = {q: np.zeros(T) for q in ("energy_kwh", "carbon_kg", "gpu_hours", "gpu_cost_usd", "electricity_cost_usd")}
        started_tot = stopped_tot = 0
        sgh = 0.0
        for i in ids:
            n = reps.get(i, np.zeros(T))
            prev = np.concatenate([[init.get(i, 0.0)], n[:-1]])
            up, down = np.maximum(n - prev, 0.0), np.maximum(prev - n, 0.0)
            started_tot += int(up.sum())
            stopped_tot += int(down.sum())
            for t in range(T):
                o.count("replica_flow", 1)
                got = stated.get((t, i), (0, 0))
                if got != (int(up[t]), int(down[t])):
                    o.add("replica_flow", {"slot": t, "deployment": i},
                          f"slot {t}: deployment {i} goes from {_n(prev[t])} to {_n(n[t])} replicas, so "
                          f"{int(up[t])} started and {int(down[t])} stopped, but the plan states {got[0]} and {got[1]}",
                          abs(got[0] - up[t]) + abs(got[1] - down[t]))
                if scal.max_change is not None:
                    o.count("replica_flow", 1)
                    if up[t] + down[t] > scal.max_change:
                        o.add("replica_flow", {"slot": t, "deployment": i},
                              f"slot {t}: deployment {i} starts {int(up[t])} and stops {int(down[t])} replicas, above "
                              f"max_change {scal.max_change}", up[t] + down[t] - scal.max_change)
                if L > 1:
                    o.count("replica_flow", 1)
                    recent = up[max(0, t - L + 1):t + 1].sum()
                    if recent > n[t]:
                        o.add("replica_flow", {"slot": t, "deployment": i},
                              f"slot {t}: deployment {i} runs {_n(n[t])} replicas but started {_n(recent)} in the last "
                              f"{L} slots (min_up_slots)", recent - n[t])
            if i in info and up.any():
                r, g, model, per, idle, market = info[i]
                hrs = startup_h(model) * per * up          # GPU-hours spent starting, per slot
                sgh += float(hrs.sum())
                add["gpu_hours"] += hrs
                if r >= 0 and g >= 0 and not np.isnan(gpu_price(r, g, market)):
                    add["gpu_cost_usd"] += hrs * gpu_price(r, g, market)
                if r >= 0 and np.isfinite(idle):
                    e = sc.pue[r] * startup_h(model) * idle * up / 1000.0
                    add["energy_kwh"] += e
                    add["carbon_kg"] += e * sc.carbon[r, :T] / 1000.0
                    add["electricity_cost_usd"] += e * sc.elec_price[r, :T] / 1000.0
        self.scaling_add = add
        self.scaling_gpu_hours = sgh
        # with VMs, check_vms adds the VMs' provisioning and checks scaling_gpu_hours
        for fld, val in (() if vm_mode else (("scaling_gpu_hours", sgh),)) + ( ("replicas_started", started_tot),
                         ("replicas_stopped", stopped_tot)):
            o.count("totals", 1)
            got = getattr(p.totals, fld)
            if got is None or o.ne(float(got), float(val)):
                o.add("totals", {"scope": "horizon", "quantity": fld},
                      f"totals.{fld} is {got}, recomputed {_n(val)}", abs((got or 0) - val))

    # ------------------------------------------------------------------ VMs and spot
    def check_vms(self) -> None:
        """With VM offers: the slot's VM rows, their packing, VM starts, the rental totals and spot rules."""
        o, sc, D, p, T, h = self.o, self.sc, self.D, self.p, self.T, self.h
        vo = sc.vm_offers
        if vo is None:
            for t, sl in enumerate(p.slots[:T]):
                if sl.vms is not None:
                    o.add("options", {"slot": t, "field": "vms"}, f"slot {t} lists VMs but the scenario rents none")
            return
        offers = {(row.region, row.name, row.market): row for row in vo.itertuples(index=False)}
        across = {m.name: m.pipeline_across_vms for m in sc.spec.models}
        prof = sc.profiles
        if len(prof):
            cfg = prof.groupby(["gpu", "model", "tp", "pp", "freq_mhz"], as_index=False)["idle_power_w"].max()
            idle_gpu = (cfg["idle_power_w"] / (cfg["tp"] * cfg["pp"])).groupby(cfg["gpu"]).min().to_dict()
        else:
            idle_gpu = {}
        add = {q: np.zeros(T) for q in ("energy_kwh", "carbon_kg", "gpu_hours", "gpu_cost_usd", "electricity_cost_usd")}

        def energy(r, t, kwh):
            add["energy_kwh"][t] += kwh
            add["carbon_kg"][t] += kwh * sc.carbon[r, t] / 1000.0
            add["electricity_cost_usd"][t] += kwh * sc.elec_price[r, t] / 1000.0

        counts = np.zeros((len(vo), T))
        index = {key: i for i, key in enumerate(offers)}
        vm_hours = spot_gh = restart_gh = 0.0
        for t, sl in enumerate(p.slots[:T]):
            if sl.vms is None:
                o.add("options", {"slot": t, "field": "vms"}, f"slot {t} has no vms list (the scenario rents VMs)")
                continue
            seen = set()
            for q in sl.vms:
                key = (q.region, q.vm, q.market)
                o.count("vm_packing", 1)
                w = {"slot": t, "region": q.region, "vm": q.vm, "market": q.market}
                if key not in offers:
                    o.add("reference", w, f"slot {t}: region {q.region} does not rent {q.vm} {q.market}")
                    continue
                if key in seen:
                    o.add("reference", w, f"slot {t}: VMs {q.region}/{q.vm}/{q.market} listed more than once")
                    continue
                seen.add(key)
                off = offers[key]
                if q.gpus_per_vm != off.gpus:
                    o.add("reference", w | {"field": "gpus_per_vm"},
                          f"slot {t}: {q.vm} has {off.gpus} GPUs per VM, the plan says {q.gpus_per_vm}")
                if q.count < 0 or q.count > int(off.avail[t]):
                    o.add("vm_packing", w, f"slot {t}: {q.count} {q.vm} VMs ({q.market}) in {q.region}, "
                          f"{int(off.avail[t])} available", max(q.count - int(off.avail[t]), -q.count))
                counts[index[key], t] = q.count
        # packing: per (region, GPU type, market, slot), largest replica (or stage) first, best fit
        for t in range(T):
            Dt = D[(D["t"] == t) & D["offered"].to_numpy(bool)]
            for (reg, gpu, mk), grp in Dt.groupby(["region", "gpu", "market"]):
                mk = mk or "on-demand"
                items = []
                for row in grp.itertuples(index=False):
                    n = int(round(float(row.replicas)))
                    if across.get(row.model, False):
                        items += [int(row.tp)] * (n * int(row.pp))
                    else:
                        items += [int(row.tp) * int(row.pp)] * n
                bins, pool = [], 0
                for i, (key, off) in enumerate(offers.items()):
                    if key[0] == reg and off.gpu == gpu and key[2] == mk:
                        if off.flexible:
                            pool += int(counts[i, t])
                        else:
                            bins += [int(off.gpus)] * int(counts[i, t])
                bins.sort()
                left = []
                for s_ in sorted(items, reverse=True):
                    j = next((j for j, b in enumerate(bins) if b >= s_), None)
                    if j is not None:
                        bins[j] -= s_
                        bins.sort()
                    elif pool >= s_:
                        pool -= s_
                    else:
                        left.append(s_)
                o.count("vm_packing", 1)
                if left:
                    o.add("vm_packing", {"slot": t, "region": reg, "gpu": gpu, "market": mk},
                          f"slot {t}: {len(left)} replica(s) or stage(s) of {gpu} ({mk}) in {reg} do not fit the "
                          f"VMs rented (largest {max(left)} GPUs)", float(sum(left)))
        # rental, idle GPUs, spot restarts
        r_of = {n: i for i, n in enumerate(sc.regions)}
        for i, (key, off) in enumerate(offers.items()):
            r = r_of[key[0]]
            for t in range(T):
                c = counts[i, t]
                if c <= 0:
                    continue
                add["gpu_hours"][t] += c * off.gpus * h
                add["gpu_cost_usd"][t] += c * off.price * h
                vm_hours += c * h
                if off.market == "spot":
                    spot_gh += c * off.gpus * h
                energy(r, t, sc.pue[r] * h * c * off.gpus * idle_gpu.get(off.gpu, 0.0) / 1000.0)
                if off.rate > 0:
                    rs = off.restart_s if np.isfinite(off.restart_s) else (
                        max((self.spot_restart_s(m) for m in sc.models), default=0.0))
                    rh = off.rate * h * rs / 3600.0 * c
                    restart_gh += rh * off.gpus
                    add["gpu_hours"][t] += rh * off.gpus
                    add["gpu_cost_usd"][t] += rh * off.price
                    energy(r, t, sc.pue[r] * rh * off.gpus * idle_gpu.get(off.gpu, 0.0) / 1000.0)
        # replicas' GPUs are not idle
        for row in D[D["offered"].to_numpy(bool)].itertuples(index=False):
            if 0 <= row.t < T and row.r >= 0:
                energy(row.r, row.t, -sc.pue[row.r] * h * float(row.gpus_dec) * idle_gpu.get(row.gpu, 0.0) / 1000.0)
        # VM starts (options.scaling): from the previous slot, or the fewest VMs of the largest type per
        # (region, GPU type, market) that hold the initial replicas
        started_vms = 0
        sgh = getattr(self, "scaling_gpu_hours", 0.0)
        if self.scal is not None:
            init = np.zeros(len(vo))
            need: dict[tuple, float] = {}
            for x in self.scal.initial:
                key = (x.region, x.gpu, x.market)
                need[key] = need.get(key, 0.0) + x.replicas * x.tp * x.pp
            for (reg, gpu, mk), gpus in need.items():
                cand = [(-off.gpus, i) for i, (key, off) in enumerate(offers.items())
                        if key[0] == reg and off.gpu == gpu and key[2] == mk]
                if cand:
                    neg, i = min(cand)
                    init[i] = math.ceil(gpus / -neg - 1e-9)
            ph = float(self.scal.provision_s) / 3600.0
            for i, (key, off) in enumerate(offers.items()):
                prev = np.concatenate([[init[i]], counts[i, :-1]])
                up, down = np.maximum(counts[i] - prev, 0), np.maximum(prev - counts[i], 0)
                started_vms += int(up.sum())
                r = r_of[key[0]]
                for t in range(T):
                    sl = p.slots[t] if t < len(p.slots) else None
                    row = next((q for q in (sl.vms or []) if (q.region, q.vm, q.market) == key), None) if sl else None
                    got = (row.started or 0, row.stopped or 0) if row is not None else (0, 0)
                    o.count("vm_packing", 1)
                    if got != (int(up[t]), int(down[t])):
                        o.add("vm_packing", {"slot": t, "region": key[0], "vm": key[1], "market": key[2]},
                              f"slot {t}: {key[1]} ({key[2]}) in {key[0]} goes from {int(prev[t])} to "
                              f"{int(counts[i, t])} VMs, so {int(up[t])} started and {int(down[t])} stopped, but the "
                              f"plan states {got[0]} and {got[1]}", abs(got[0] - up[t]) + abs(got[1] - down[t]))
                    if up[t] > 0 and ph > 0:
                        add["gpu_hours"][t] += up[t] * off.gpus * ph
                        add["gpu_cost_usd"][t] += up[t] * off.price * ph
                        sgh += up[t] * off.gpus * ph
                        energy(r, t, sc.pue[r] * up[t] * off.gpus * ph * idle_gpu.get(off.gpu, 0.0) / 1000.0)
        self.vm_add = add
        checks = [("vm_hours", vm_hours), ("spot_gpu_hours", spot_gh)]
        if restart_gh > 0 or p.totals.spot_restart_gpu_hours is not None:
            checks.append(("spot_restart_gpu_hours", restart_gh))
        if self.scal is not None:
            checks += [("vms_started", started_vms), ("scaling_gpu_hours", sgh)]
        for fld, val in checks:
            o.count("totals", 1)
            got = getattr(p.totals, fld)
            if got is None or o.ne(float(got), float(val)):
                o.add("totals", {"scope": "horizon", "quantity": fld},
                      f"totals.{fld} is {got}, recomputed {_n(val)}", abs((got or 0) - val))
        self.check_spot()

    def check_spot(self) -> None:
        """Spot eligibility and the on-demand floor (a transportation LP per region and slot)."""
        o, sc, D, L = self.o, self.sc, self.D, self.L
        spot_ok = {k.name: k.spot for k in sc.spec.classes}
        floor = {k.name: (k.on_demand_floor if k.spot else 0.0) for k in sc.spec.classes}
        P = L[L["pair_ok"]].copy()
        P["market"] = D.loc[P["drow"].to_numpy(), "market"].to_numpy() if len(P) else []
        P["region"] = D.loc[P["drow"].to_numpy(), "region"].to_numpy() if len(P) else []
        for i in np.nonzero((P["market"] == "spot").to_numpy())[0]:
            cls = P["class"].iat[i]
            o.count("spot", 1)
            if not spot_ok.get(cls, False):
                o.add("spot", {"slot": P["t"].iat[i], "deployment": P["id"].iat[i], "class": cls},
                      f"slot {P['t'].iat[i]}: spot deployment {P['id'].iat[i]} serves class {cls}, which may not run "
                      "on spot (spot: false)")
        if not any(v > 0 for v in floor.values()):
            return
        Rt = self.f["routes"]
        od = P[P["market"] != "spot"]
        kk = {n: i for i, n in enumerate(sc.classes)}
        for (t, reg), rr in Rt.groupby(["pos", "region"]):
            grp = od[(od["t"] == t) & (od["region"] == reg)]
            routed = {}
            for cls, rate in zip(rr["class"], rr["rate"]):
                if floor.get(cls, 0) > 0:
                    routed[cls] = routed.get(cls, 0.0) + float(rate) * floor[cls]
            if not routed:
                continue
            # capacity left on each on-demand deployment after the classes that never run on spot; in the
            # fallback a deployment may carry any floor class its config serves within the SLO (zero RTT)
            cap_left, arcs = {}, []
            deps = D[(D["t"] == t) & (D["region"] == reg) & (D["market"] != "spot") & D["cfg_ok"].to_numpy(bool)]
            for drow, dep in deps.iterrows():
                g2 = grp[grp["drow"] == drow]
                used = sum(sc.burst[kk[c], t] * r_ / (m * f) for c, r_, m, f in
                           zip(g2["class"], g2["rate"], g2["mu"], g2["fac"]) if not spot_ok.get(c, False))
                cap_left[drow] = max(self.U * float(dep["replicas"]) - used, 0.0)
                for c in routed:
                    k = kk[c]
                    kc = sc.spec.classes[k]
                    if kc.model != dep["model"]:
                        continue
                    row = self.prof[(self.prof["model"] == dep["model"]) & (self.prof["gpu"] == dep["gpu"])
                                    & (self.prof["tp"] == dep["tp"]) & (self.prof["pp"] == dep["pp"])
                                    & (self.prof["freqr"] == dep["freqr"]) & (self.prof["shape"] == kc.shape)]
                    if row.empty or row["tbt_ms"].iat[0] > kc.slo.tbt_ms or row["ttft_ms"].iat[0] > kc.slo.ttft_ms:
                        continue
                    fac = self._pair_factor(dep, c)
                    arcs.append((drow, c, sc.burst[k, t] / (float(row["max_rps"].iat[0]) * fac)))
            o.count("spot", 1)
            if not _transport_feasible(cap_left, routed, arcs):
                o.add("spot", {"slot": int(t), "region": reg},
                      f"slot {int(t)}: the on-demand replicas in {reg} cannot carry the on_demand_floor share of "
                      f"{', '.join(sorted(routed))} if every spot VM is reclaimed", 0.0)

    def _pair_factor(self, dep, cls: str) -> float:
        """The plan's capacity factor of a deployment's config for a class (1 where none)."""
        for f in self.p.options.capacity_factors:
            if (f.model, f.gpu, f.tp, f.pp, f.class_) == (dep["model"], dep["gpu"], dep["tp"], dep["pp"], cls) and \
                    abs(f.freq_mhz - float(dep["freq"])) <= 1e-9 * max(1.0, abs(f.freq_mhz)):
                return float(f.factor)
        return 1.0

    def check_replica_rules(self) -> None:
        """options.replica_limits per slot, and scale_down_delay_slots per deployment."""
        o, sc, D, T = self.o, self.sc, self.D, self.T
        for i, lim in enumerate(sc.options.replica_limits):
            sel = D["model"] == lim.model
            for f_, col in (("region", "region"), ("gpu", "gpu"), ("tp", "tp"), ("pp", "pp")):
                if getattr(lim, f_) is not None:
                    sel &= D[col] == getattr(lim, f_)
            per = D[sel].groupby("t")["replicas"].sum().reindex(range(T), fill_value=0.0)
            for t, n in per.items():
                o.count("replica_limits", 1)
                if n < lim.min - 1e-9 or (lim.max is not None and n > lim.max + 1e-9):
                    o.add("replica_limits", {"slot": int(t), "limit": i},
                          f"slot {t}: {_n(n)} replicas match replica_limits[{i}] ({lim.model}), outside "
                          f"[{lim.min}, {lim.max if lim.max is not None else 'inf'}]",
                          max(lim.min - n, n - (lim.max if lim.max is not None else n)))
        if self.scal is None or self.scal.scale_down_delay_slots <= 0 or not hasattr(self, "P"):
            return
        Dd = self.scal.scale_down_delay_slots
        P = self.P
        need = (P.assign(q=P["ucap"]).groupby("drow")["q"].sum())
        # per deployment base: replicas in slot t against the replicas the load of slot t-d needed
        by_id: dict[str, dict[int, list[float]]] = {}
        for drow, row in D.iterrows():
            bid = f"{row['region']}/{base_key(row['model'], row['gpu'], row['tp'], row['pp'], row['market'] == 'spot')}"
            per = self.U * (1.0 - float(row.get("loss", 0.0)))
            cell = by_id.setdefault(bid, {}).setdefault(int(row["t"]), [0.0, 0.0])
            cell[0] += float(row["replicas"])
            cell[1] += float(need.get(drow, 0.0)) / per if per > 0 else float("inf")
        for did, ts_ in by_id.items():
            for t in range(T):
                have = ts_.get(t, (0.0, 0.0))[0]
                for d in range(1, Dd + 1):
                    if t - d < 0 or (t - d) not in ts_:
                        continue
                    o.count("replica_flow", 1)
                    prev_need = ts_[t - d][1]
                    if prev_need > have + 1e-6 * max(1.0, prev_need):
                        o.add("replica_flow", {"slot": t, "deployment": did},
                              f"slot {t}: deployment {did} runs {_n(have)} replicas, below the {_n(prev_need)} the "
                              f"load of slot {t - d} needed (scale_down_delay_slots {Dd})", prev_need - have)

    # ------------------------------------------------------------------ availability
    def check_availability(self) -> None:
        o, sc, D = self.o, self.sc, self.D
        if sc.vm_offers is not None:
            return  # VMs: check_vms
        m = D["offered"].to_numpy(bool)
        X = D[m]
        if not len(X):
            return
        used = X.groupby(["t", "r", "g"], sort=True)["gpus_dec"].sum()
        t = used.index.get_level_values(0).to_numpy()
        r = used.index.get_level_values(1).to_numpy()
        g = used.index.get_level_values(2).to_numpy()
        avail = sc.availability[r, g, t].astype(float)
        u = used.to_numpy(float)
        o.count("gpu_availability", len(u))
        with np.errstate(invalid="ignore"):
            over = ~(u - avail <= o.abs)  # counts: no relative slack
        for i in np.nonzero(over)[0]:
            o.add("gpu_availability", {"slot": t[i], "region": sc.regions[r[i]], "gpu": sc.gpus[g[i]]},
                  f"slot {t[i]}: {_n(u[i])} {sc.gpus[g[i]]} GPUs used in {sc.regions[r[i]]}, {int(avail[i])} available",
                  u[i] - avail[i])

    # ------------------------------------------------------------------ totals
    def check_totals(self) -> dict:
        o, sc, D, p = self.o, self.sc, self.D, self.p
        T, h = self.T, self.h
        pw = np.where(D["calc_ok"].to_numpy(bool), D["power_rec"].to_numpy(float), D["power"].to_numpy(float))
        t = D["t"].to_numpy(np.int64)
        r = D["r"].to_numpy(np.int64)
        g = D["g"].to_numpy(np.int64)
        rk = r >= 0
        priced = D["offered"].to_numpy(bool)
        energy = np.zeros(len(D))
        energy[rk] = sc.pue[r[rk]] * h * pw[rk] / 1000.0
        carbon = np.zeros(len(D))
        carbon[rk] = energy[rk] * sc.carbon[r[rk], t[rk]] / 1000.0
        ecost = np.zeros(len(D))
        ecost[rk] = energy[rk] * sc.elec_price[r[rk], t[rk]] / 1000.0
        gh = D["gpus_dec"].to_numpy(float) * h
        gcost = np.zeros(len(D))
        if sc.vm_offers is None:
            gcost[priced] = gh[priced] * sc.gpu_price[r[priced], g[priced]]
        else:  # VMs are rented whole (check_vms adds them); replicas' GPUs count there
            gh = np.zeros(len(D))
            priced = np.ones(len(D), bool)

        def per_slot(v, mask=None):
            a = np.zeros(T)
            sel = np.ones(len(v), bool) if mask is None else mask
            np.add.at(a, t[sel], v[sel])
            return a

        # quantities a slot's recomputation cannot vouch for (unknown region or unpriced GPU)
        no_energy = per_slot(np.ones(len(D)), ~rk) > 0
        no_cost = no_energy | (per_slot(np.ones(len(D)), ~priced) > 0)
        S = {
            "energy_kwh": per_slot(energy), "carbon_kg": per_slot(carbon), "gpu_hours": per_slot(gh),
            "gpu_cost_usd": per_slot(gcost), "electricity_cost_usd": per_slot(ecost),
        }
        for q, add in self.scaling_add.items():  # startup of replicas (options.scaling)
            S[q] = S[q] + add
        for q, add in self.vm_add.items():  # VMs rented, their idle GPUs, spot restarts, VM starts
            S[q] = S[q] + add
        S["cost_usd"] = S["gpu_cost_usd"] + S["electricity_cost_usd"]
        unknown = {"energy_kwh": no_energy, "carbon_kg": no_energy, "gpu_hours": np.zeros(T, bool),
                   "gpu_cost_usd": no_cost, "electricity_cost_usd": no_energy, "cost_usd": no_cost}
        uns_req = float(self.uns_rate.sum() * self.secs)
        tot = {q: float(S[q].sum()) for q in S}
        tot["unserved_requests"] = uns_req
        # demand below the planner's resolution is not planned (the plan's warnings name it)

        planned = np.where(sc.demand >= RATE_RESOLUTION, sc.demand, 0.0)
        tot["served_requests"] = float(planned.sum() * self.secs) - uns_req
        tot["unserved_rps"] = uns_req / (T * self.secs)
        complete = {q: not unknown[q].any() for q in S} | {"unserved_requests": True, "served_requests": True,
                                                            "unserved_rps": True}
        # per slot
        sl = self.f["slots"]
        for pos in np.nonzero(self.slot_valid)[0]:
            ti = int(self.slot_t[pos])
            for q in SLOT_TOTALS:
                if unknown[q][ti]:
                    continue
                o.count("totals", 1)
                rep, rec = float(sl[q].iat[pos]), float(S[q][ti])
                if o.ne(rep, rec):
                    o.add("totals", {"slot": ti, "quantity": q},
                          f"slot {ti}: totals.{q} is {_n(rep)}, recomputed {_n(rec)}", abs(rep - rec))
        # horizon
        for q in TOTALS:
            if not complete[q]:
                continue
            o.count("totals", 1)
            rep, rec = float(getattr(p.totals, q)), tot[q]
            if o.ne(rep, rec):
                o.add("totals", {"scope": "horizon", "quantity": q},
                      f"totals.{q} is {_n(rep)}, recomputed {_n(rec)}", abs(rep - rec))
        name = p.objective.name
        obj = tot[OBJECTIVE_TOTAL[name]] + (self.penalty * uns_req if self.unserved_ok else 0.0)
        return {
            "complete": all(complete.values()),
            "totals": {q: tot[q] for q in TOTALS},
            "objective": {"name": name, "value": obj},
            "slots": [{"index": ti, **{q: float(S[q][ti]) for q in (*SLOT_TOTALS, "gpu_cost_usd",
                                                                    "electricity_cost_usd")}}
                      for ti in range(T)],
            "_complete": complete,
        }

    # ------------------------------------------------------------------ objective
    def check_objective(self) -> None:
        o, p, sc, R = self.o, self.p, self.sc, self.R
        ob = p.objective
        tot = p.totals
        o.count("objective", 2)
        pen = self.penalty * tot.unserved_requests if self.unserved_ok else 0.0
        want = getattr(tot, OBJECTIVE_TOTAL[ob.name]) + pen
        if o.ne(ob.value, want):
            extra = f" + penalty {_n(self.penalty)} x {_n(tot.unserved_requests)} unserved requests" if pen else ""
            o.add("objective", {"objective": ob.name},
                  f"objective {ob.name} is {_n(ob.value)}, the plan's totals give "
                  f"{OBJECTIVE_TOTAL[ob.name]} {_n(getattr(tot, OBJECTIVE_TOTAL[ob.name]))}{extra} = {_n(want)}",
                  abs(ob.value - want))
        if ob.unit != OBJECTIVE_UNIT[ob.name]:
            o.add("objective", {"objective": ob.name, "field": "unit"},
                  f"objective {ob.name} has unit {ob.unit!r}, expected {OBJECTIVE_UNIT[ob.name]!r}")
        if ob.secondary is not None:
            o.count("objective", 1)
            if ob.secondary not in OBJECTIVE_TOTAL:
                o.add("objective", {"objective": ob.secondary, "field": "secondary"},
                      f"unknown secondary objective {ob.secondary!r}")
            elif ob.secondary_value is not None:
                sv = getattr(tot, OBJECTIVE_TOTAL[ob.secondary])
                if o.ne(ob.secondary_value, sv):
                    o.add("objective", {"objective": ob.secondary, "field": "secondary_value"},
                          f"secondary objective {ob.secondary} is {_n(ob.secondary_value)}, the plan's totals give "
                          f"{_n(sv)}", abs(ob.secondary_value - sv))
        # shares
        m = ((R["k"] >= 0) & (R["o"] >= 0)).to_numpy()
        dem = np.zeros(len(R))
        dem[m] = sc.demand[R["k"].to_numpy()[m], R["o"].to_numpy()[m], R["t"].to_numpy()[m]]
        m = m & (dem > 0)
        o.count("objective", int(m.sum()))
        share = R["share"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            want_s = R["rate"].to_numpy(float) / np.where(dem > 0, dem, 1.0)
        for i in np.nonzero(m & o.ne(share, want_s))[0]:
            t, cls, org, reg = self.cells(R, i, "t", "class", "origin", "region")
            o.add("objective", {"slot": t, "class": cls, "origin": org, "region": reg, "field": "share"},
                  f"slot {t}: route {cls} from {org} to {reg} reports share {_n(share[i])}, "
                  f"{_n(self.c(R, 'rate')[i])} / {_n(dem[i])} req/s = {_n(want_s[i])}", abs(share[i] - want_s[i]))

    # ------------------------------------------------------------------ budget, cap
    def check_limits(self, rec: dict) -> None:
        o, p = self.o, self.p
        complete = rec.pop("_complete")
        for fam, q, limit, unit in (("budget", "cost_usd", p.options.budget_usd, "USD"),
                                    ("carbon_cap", "carbon_kg", p.options.carbon_cap_kg, "kgCO2e")):
            if limit is None:
                continue
            o.count(fam, 1)
            val = rec["totals"][q] if complete[q] else float(getattr(p.totals, q))
            src = "recomputed" if complete[q] else "reported"
            if o.gt(val, limit):
                o.add(fam, {"scope": "horizon", "quantity": q},
                      f"{q} {_n(val)} {unit} ({src}) exceeds the plan's "
                      f"{'budget' if fam == 'budget' else 'carbon cap'} {_n(limit)} {unit}", val - limit)
