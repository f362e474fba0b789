"""The week example side by side (not a test): the coupled plan against today's per-slot plan re-priced
with the same startup costs, and the spot/on-demand mix simulated under injected spot reclaims.

1. The per-slot plan (the week without ``options.scaling``, slot by slot), then the fleet over time as
   ``planner.solve(week)`` makes it (rolling horizon from that plan; bound from its slots), at
   ``--time-limit`` (default: none) and ``--threads``; its wall time is the sum of both steps.
2. The per-slot plan re-priced in the coupled model (``planner.optimize.rolling.reprice``): the same
   fleets, with the starts and stops their changes imply, each paying its startup time.
3. Optionally (``--whole-model SECONDS``) the whole coupled MILP at that limit, the exact reference.
4. The coupled plan simulated on every ``--sim-every``-th slot for ``--sim-minutes`` minutes, without
   and with spot reclaims injected at 1x and ``--stress``x the scenario's rates (seeded).

Seconds are wall times of this machine; compare within a run.

    python benchmarks/bench_week.py                              # no time limit, 2 threads
    python benchmarks/bench_week.py --time-limit 120 --whole-model 120
"""

from __future__ import annotations

import argparse
import time

import planner
from planner.optimize.rolling import reprice
from planner.scenario.defaults import example_path
from planner.sim.orchestrate import simulate


def _row(name, p, wall):
    t = p.totals
    gap = "-" if p.solver.gap is None else f"{100 * p.solver.gap:.2f} %"
    bound = "-" if p.solver.bound is None else f"{p.solver.bound:,.1f}"
    acts = sum(len(s.actions or []) for s in p.slots)
    spot = (t.spot_gpu_hours or 0.0) / t.gpu_hours if t.gpu_hours else 0.0
    return (f"| {name} | {wall} | {t.carbon_kg:,.1f} | {bound} | {gap} | {t.cost_usd:,.0f} | {t.gpu_hours:,.0f} | "
            f"{t.scaling_gpu_hours:,.1f} | {t.replicas_started} / {t.replicas_stopped} | {acts} | "
            f"{t.vms_started} | {100 * spot:.1f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--whole-model", type=float, default=None, metavar="SECONDS")
    ap.add_argument("--sim-every", type=int, default=6)
    ap.add_argument("--sim-minutes", type=float, default=10.0)
    ap.add_argument("--stress", type=float, default=20.0)
    ap.add_argument("--skip-per-slot", action="store_true", help="leave out today's per-slot plan (slow)")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--objective", default=None, help="carbon (the week's), energy, cost or gpu-hours")
    a = ap.parse_args()
    sc = planner.load_scenario(example_path("week"))
    if a.objective:
        sc = sc.replace_options(objective=a.objective)
    print("| plan | wall s | carbon kg | bound | gap | cost USD | GPU-h | startup GPU-h | replicas started / stopped "
          "| actions | VMs started | spot GPU-h |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    coupled = planner.solve(sc, time_limit=a.time_limit, threads=a.threads)
    wall = time.perf_counter() - t0
    assert planner.check(coupled, sc).ok
    print(_row("coupled (rolling horizon)", coupled, f"{wall:.0f}"), flush=True)
    if a.skip_per_slot:
        plain = None
    else:
        t0 = time.perf_counter()
        plain = planner.solve(sc.without_scaling(), time_limit=a.time_limit, threads=a.threads)
        t_plain = time.perf_counter() - t0
    priced = None if plain is None else reprice(plain, sc)
    if priced is not None:
        assert planner.check(priced, sc).ok
        print(_row("per-slot plan, re-priced", priced, f"{t_plain:.0f}"), flush=True)
    if a.whole_model:
        t0 = time.perf_counter()
        try:
            whole = planner.solve(sc, time_limit=a.whole_model, threads=a.threads, decompose=False)
            print(_row(f"whole model ({a.whole_model:g} s)", whole, f"{time.perf_counter() - t0:.0f}"), flush=True)
        except planner.PlannerError as e:
            print(f"| whole model ({a.whole_model:g} s) | {time.perf_counter() - t0:.0f} | {type(e).__name__}: "
                  f"{str(e)[:80]} | | | | | | | | | |", flush=True)
    print(f"\ncoupled plan: {coupled.solver.status}")
    if a.skip_sim:
        return
    slots = list(range(0, sc.n_slots, a.sim_every))
    print(f"\nSimulated: slots {slots[0]}, {slots[1]}, ... every {a.sim_every} h ({len(slots)} slots), first "
          f"{a.sim_minutes:g} min of each, Poisson at the planned rates, seed 0.\n")
    print("| reclaims injected | spot reclaims | replica-s down | requests | hit | hit within SLO | SLO attainment "
          "| spot classes | code-70b (on demand) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scale in (0.0, 1.0, a.stress):
        rep = simulate(coupled, sc, slots=slots, minutes=a.sim_minutes, interruptions=scale)
        by = {}
        for g in rep.groups:
            by.setdefault(g.class_, []).append(g)

        def att(names):
            n = sum(g.requests.arrived for c in names for g in by.get(c, []))
            met = sum(g.attainment.slo * g.requests.arrived for c in names for g in by.get(c, [])
                      if g.attainment.slo is not None)
            return f"{100 * met / n:.2f} %" if n else "-"

        spot_cls = [c.name for c in sc.spec.classes if c.spot]
        q = rep.disruptions
        print(f"| {'none' if scale == 0 else f'{scale:g}x'} | {q.spot_reclaims if q else 0} | "
              f"{q.down_replica_seconds if q else 0:,.0f} | {rep.requests.arrived:,} | {q.requests_hit if q else 0:,} | "
              f"{q.hit_met_slo if q else 0:,} | {100 * rep.attainment.slo:.2f} % | {att(spot_cls)} | "
              f"{att([c.name for c in sc.spec.classes if not c.spot])} |", flush=True)


if __name__ == "__main__":
    main()
