"""Plans that hold in simulation: simulate, derate what missed its SLOs, re-solve, until every target holds.

:func:`verify` takes a solved plan and its scenario and repeats:

1. simulate the plan (:func:`planner.sim.orchestrate.simulate`: replayed traces, or Poisson arrivals
   at the planned rates);
2. if every (class, origin) meets its class's attainment target (``slo.attainment``, default
   ``DEFAULT_ATTAINMENT`` = 0.99), stop;
3. otherwise, for every (config, class) whose simulated requests met the SLOs less often than the
   class's target, lower that pair's capacity factor ``f`` (``options.capacity_factors``):

       f <- f x clip(1 - 2 (target - attained), FLOOR, CEILING)        FLOOR = 0.5, CEILING = 0.95

   so a deployment that met 15 % of a 99 % target halves its usable capacity, one at 97 % loses
   5 %. Where a deployment serving the pair could not keep up at all (its engine needed more time
   than the window: ``work_ratio`` > 1), the profile overstates the capacity for this traffic by
   about ``over = work_ratio / planned utilisation``, and ``f`` drops to at most ``1 / over`` at
   once. A pair that also misses when the plan is simulated at ``LOW_LOAD`` (10 %) of its traffic
   is latency-bound: no capacity fixes it, so it is excluded (factor ``MIN_FACTOR``) and its class
   moves to other configs. Pairs not simulated yet (other clocks, TP degrees or GPUs for the same class) take the
   median factor of their class's simulated pairs, so the re-solve cannot dodge the correction by
   moving to an equally optimistic neighbour. Then re-solve the scenario with the new factors (the
   same objective, limits, backend and gap as the plan), and go to 1.

It stops after ``max_iterations`` re-solves at the latest. The returned plan is the last one
simulated. Its ``options.capacity_factors`` hold the factors it was sized with, so ``plan check``
verifies its capacity with them. Its ``verification`` section records every round (attainment,
worst group, carbon, cost, GPU-hours) and the final per-(class, origin) attainment. A miss that no
capacity can fix, such as a network round trip above the TTFT target or a prompt larger than the KV
cache, leaves ``verification.met`` false and is said so in the plan's warnings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from planner.errors import InfeasibleError, InputError, Problem
from planner.optimize.orchestrate import solve
from planner.plan.checker import read_plan
from planner.plan.schema import Plan, Verification, VerificationGroup, VerificationRound
from planner.scenario.loading import Scenario
from planner.scenario.schema import DEFAULT_ATTAINMENT
from planner.sim.arrivals import TraceSource
from planner.sim.orchestrate import simulate
from planner.sim.report import SimReport

FLOOR = 0.5
"""The most one round lowers a factor: at most halves it."""
CEILING = 0.95
"""The least one round lowers a missing pair's factor: by at least 5 %."""
MIN_REQUESTS = 20
"""A (config, class) with fewer simulated requests than this is not derated on its own evidence."""
LOW_LOAD = 0.1
"""A failing plan is also simulated at this share of its traffic: what still misses there is bound by
latency (prompt, output, network), not by capacity."""
BACKOFFS = 3
"""When a re-solve is infeasible (the derated fleet no longer fits the GPUs available), the new
deratings are softened halfway (geometrically) back this many times before the loop stops."""
MIN_FACTOR = 1e-3
"""Factors never go below this (a config that keeps missing is then effectively unused)."""


@dataclass(frozen=True)
class _Pair:
    model: str
    gpu: str
    tp: int
    pp: int
    freq_mhz: float
    class_: str

    def key(self) -> tuple:
        return (self.model, self.gpu, self.tp, self.pp, float(f"{self.freq_mhz:.10g}"), self.class_)


def targets_of(sc: Scenario) -> dict[str, float]:
    """Each class's attainment target: its ``slo.attainment``, else ``DEFAULT_ATTAINMENT``."""
    return {k.name: (k.slo.attainment if k.slo.attainment is not None else DEFAULT_ATTAINMENT) for k in sc.spec.classes}


def _pair_counts(plan: Plan, rep: SimReport) -> dict[tuple, tuple[_Pair, int, int, float]]:
    """Per (config, class), summed over regions and slots: simulated requests, how many met every SLO,
    and the largest overload seen on a deployment serving it (``work_ratio / planned utilisation`` of
    deployments whose work ratio is above 1, i.e. that could not keep up; 0 when none)."""
    cfg = {(s.index, d.id): d for s in plan.slots for d in s.deployments}
    out: dict[tuple, tuple[_Pair, int, int, float]] = {}
    for dr in rep.deployments:
        d = cfg[(dr.slot, dr.id)]
        over = dr.work_ratio / dr.planned_utilization if dr.work_ratio > 1 and dr.planned_utilization > 0 else 0.0
        for c in dr.classes:
            p = _Pair(d.model, d.gpu, d.tp, d.pp, d.freq_mhz, c.class_)
            _, n, m, r = out.get(p.key(), (p, 0, 0, 0.0))
            out[p.key()] = (p, n + c.requests, m + c.met, max(r, over))
    return out


def _groups(rep: SimReport, targets: dict[str, float]) -> list[VerificationGroup]:
    return [VerificationGroup(**{"class": g.class_}, origin=g.origin, requests=g.requests.arrived,
                              attainment=g.attainment.slo if g.attainment.slo is not None else 1.0,
                              target=targets[g.class_])
            for g in rep.groups if g.requests.arrived > 0]


def _worst(groups: list[VerificationGroup]) -> VerificationGroup | None:
    return min(groups, key=lambda g: (g.attainment - g.target, g.class_, g.origin)) if groups else None


def _derate(factors: dict[tuple, tuple[_Pair, float]], counts, targets: dict[str, float],
            failing_classes: set[str], low=None, excluded: set[tuple] | None = None) -> int:
    """Lower the factor of every (config, class) that missed its class's target; returns how many changed.

    ``low``: the same counts from a simulation of the plan at ``LOW_LOAD`` of the traffic. A pair that
    misses its target there too is latency-bound (its prompts or outputs take too long on that config
    whatever the load): it is excluded (factor ``MIN_FACTOR``, added to ``excluded``) so that the
    re-solve moves its class elsewhere; derating its capacity would only buy idle replicas.

    When no pair missed on its own evidence but some (class, origin) did (its misses spread thin over
    many deployments), every pair of a failing class that missed at all is lowered by the least step."""
    changed = 0
    for key, (p, n, m, over) in sorted(counts.items()):
        target = targets[p.class_]
        got = m / n if n else 1.0
        if n >= MIN_REQUESTS and got < target:
            if low is not None and key in low:
                _, nl, ml, _ = low[key]
                if nl >= MIN_REQUESTS and ml / nl < target:
                    factors[key] = (p, MIN_FACTOR)
                    if excluded is not None:
                        excluded.add(key)
                    changed += 1
                    continue
            step = float(np.clip(1.0 - 2.0 * (target - got), FLOOR, CEILING))
            old = factors.get(key, (p, 1.0))[1]
            new = old * step
            if over > 1:  # saturated: the profile overstates the capacity for this traffic by ``over``
                new = min(new, 1.0 / over)
            factors[key] = (p, max(new, MIN_FACTOR))
            changed += 1
    if changed:
        return changed
    for key, (p, n, m, _) in sorted(counts.items()):
        if p.class_ in failing_classes and n and m < n:
            old = factors.get(key, (p, 1.0))[1]
            factors[key] = (p, max(old * CEILING, MIN_FACTOR))
            changed += 1
    return changed


def _candidates(sc: Scenario) -> dict[str, list[_Pair]]:
    """Every (config, class) pair the profile table offers, by class."""
    out: dict[str, list[_Pair]] = {}
    prof = sc.profiles
    for k in sc.spec.classes:
        rows = prof[(prof["model"] == k.model) & (prof["shape"] == k.shape)]
        out[k.name] = [_Pair(r.model, r.gpu, int(r.tp), int(r.pp), float(r.freq_mhz), k.name)
                       for r in rows.itertuples(index=False)]
    return out


def _spread(factors: dict[tuple, tuple[_Pair, float]], measured: set[tuple], candidates: dict[str, list[_Pair]],
            excluded: set[tuple] = frozenset()) -> int:
    """Give every pair not yet simulated the median factor of its class's simulated pairs (when below 1);
    latency-bound (``excluded``) pairs say nothing of their neighbours' capacity and are left out.

    A profile that overstates one config's capacity for a class's traffic (its real lengths, its
    tails) overstates its neighbours' (other clocks, TP, GPUs) too; without this, each re-solve would
    move the load to an underated neighbour and miss again. Returns how many factors changed."""
    changed = 0
    for cls, pairs in sorted(candidates.items()):
        seen = [factors.get(key, (None, 1.0))[1] for key in measured if key[-1] == cls and key not in excluded]
        if not seen:
            continue
        prior = float(np.median(seen))
        if prior >= 1.0:
            continue
        for p in pairs:
            key = p.key()
            if key in measured:
                continue
            old = factors.get(key, (p, 1.0))[1]
            if prior < old:
                factors[key] = (p, prior)
                changed += 1
    return changed


def _factor_list(factors: dict[tuple, tuple[_Pair, float]]) -> list[dict]:
    return [{"model": p.model, "gpu": p.gpu, "tp": p.tp, "pp": p.pp, "freq_mhz": p.freq_mhz, "class": p.class_,
             "factor": float(f"{f:.6g}")} for _, (p, f) in sorted(factors.items())]


def verify(plan, scenario: Scenario, *, traces: Sequence[TraceSource | str] | None = None, policy: str = "fcfs",
           minutes: float | None = None, seed: int = 0, load_scale: float = 1.0, slots: Sequence[int] | str | None = None,
           max_iterations: int = 5, progress: Callable[[dict], None] | None = None, **solve_overrides) -> Plan:
    """Simulate ``plan`` on ``scenario`` and re-solve with derated capacities until every (class, origin)
    meets its attainment target, or ``max_iterations`` re-solves were made; returns the last plan
    simulated, with its ``verification`` record.

    ``traces``, ``policy``, ``minutes``, ``seed``, ``load_scale``, ``slots``: as for
    :func:`planner.simulate` (used for every round). Re-solves use the plan's objective, options,
    backend, gap, time limit, threads and seed; ``solve_overrides`` (e.g. ``time_limit=60``) replace
    those keyword arguments of :func:`planner.solve`. ``progress`` receives one dict per round.
    """
    if not (isinstance(max_iterations, int) and 0 <= max_iterations <= 50):
        raise InputError([Problem("max_iterations", "must be a whole number from 0 to 50")], "invalid verification option")
    plan = read_plan(plan)
    sc = scenario
    targets = targets_of(sc)
    po, so = plan.options, plan.solver
    factors: dict[tuple, tuple[_Pair, float]] = {}
    for f in po.capacity_factors:
        p = _Pair(f.model, f.gpu, f.tp, f.pp, f.freq_mhz, f.class_)
        factors[p.key()] = (p, f.factor)
    solve_kw = dict(backend=so.backend, time_limit=so.time_limit, mip_gap=so.mip_gap, threads=so.threads, seed=so.seed,
                    explain=False)  # an infeasible re-solve only needs to be known: it is softened and retried
    solve_kw.update(solve_overrides)
    base = sc.replace_options(objective=po.objective, budget_usd=po.budget_usd, carbon_cap_kg=po.carbon_cap_kg,
                              max_utilization=po.max_utilization, tie_break=po.tie_break,
                              demand_statistic=po.demand_statistic,
                              unserved={"allowed": po.unserved_allowed,
                                        "penalty_per_request": po.unserved_penalty_per_request})
    sim_kw = dict(traces=traces, policy=policy, minutes=minutes, seed=seed, load_scale=load_scale, slots=slots)
    candidates = _candidates(sc)
    measured: set[tuple] = set()  # pairs with simulated evidence (MIN_REQUESTS or more requests) so far
    excluded: set[tuple] = set()  # pairs found latency-bound (missing their target even at LOW_LOAD)
    rounds: list[VerificationRound] = []
    stopped: str | None = None
    cur, solve_s = plan, so.solve_seconds
    while True:
        t0 = time.perf_counter()
        rep = simulate(cur, sc, **sim_kw)
        sim_s = time.perf_counter() - t0
        groups = _groups(rep, targets)
        failing = [g for g in groups if g.attainment < g.target]
        if failing and len(rounds) >= max_iterations:
            stopped = f"the iteration limit ({max_iterations} re-solves) was reached"
        low = None
        if failing and stopped is None:  # what still misses at a tenth of the traffic is latency-bound
            low = _pair_counts(cur, simulate(cur, sc, **dict(sim_kw, load_scale=load_scale * LOW_LOAD)))
            sim_s = time.perf_counter() - t0
        worst = _worst(groups)
        rnd = VerificationRound(
            iteration=len(rounds), attainment=rep.attainment.slo if rep.attainment.slo is not None else 1.0,
            worst=f"{worst.class_}/{worst.origin}" if worst else "", worst_attainment=worst.attainment if worst else 1.0,
            met=not failing, carbon_kg=cur.totals.carbon_kg, cost_usd=cur.totals.cost_usd, gpu_hours=cur.totals.gpu_hours,
            factors=len(cur.options.capacity_factors), solve_seconds=solve_s, simulate_seconds=sim_s)
        rounds.append(rnd)
        if progress is not None:
            progress(rnd.model_dump(by_alias=True))
        if low is None:  # met, or at the iteration limit
            break
        counts = _pair_counts(cur, rep)
        measured |= {key for key, (_, n, _, _) in counts.items() if n >= MIN_REQUESTS}
        before = dict(factors)
        if not _derate(factors, counts, targets, {g.class_ for g in failing}, low, excluded):
            stopped = "no (config, class) to derate: the misses are not on any deployment's capacity"
            break
        _spread(factors, measured, candidates, excluded)
        t0 = time.perf_counter()
        nxt = None
        for attempt in range(BACKOFFS + 1):
            try:
                nxt = solve(base.replace_options(capacity_factors=_factor_list(factors)), **solve_kw)
                break
            except InfeasibleError:
                if attempt == BACKOFFS:
                    stopped = (f"the re-solve with the derated capacities is infeasible even with the deratings "
                               f"softened {BACKOFFS} times (the fleet cannot carry the derated load; solve the "
                               f"scenario with its options.capacity_factors set to the plan's for an explanation)")
                    break
                # halfway back (geometrically) towards the factors that were feasible
                factors = {k: (p, float(np.sqrt(f * before.get(k, (p, 1.0))[1]))) for k, (p, f) in factors.items()}
        if nxt is None:
            factors = before
            break
        cur = nxt
        solve_s = time.perf_counter() - t0
    opts = rep.options
    ver = Verification(arrivals=opts.arrivals, traces=opts.traces, policy=opts.policy, window_minutes=opts.window_minutes,
                       load_scale=opts.load_scale, seed=opts.seed, max_iterations=max_iterations, met=rounds[-1].met,
                       rounds=rounds, groups=groups, stopped=stopped)
    warnings = list(cur.warnings)
    if not ver.met:
        w = _worst(groups)
        warnings.append(f"verification: after {len(rounds) - 1} re-solve(s), {sum(g.attainment < g.target for g in groups)} "
                        f"(class, origin) group(s) still miss their attainment target in simulation (worst "
                        f"{w.class_}/{w.origin}: {w.attainment:.4f} of {w.target:g}); stopped because {stopped}")
    return cur.model_copy(update={"verification": ver, "warnings": warnings})
