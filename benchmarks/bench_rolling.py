"""The fleet over time solved by the rolling horizon against the whole model (not a test).

The embedded default day (or a scenario file) with ``options.scaling`` set, solved twice in one run
at the same time limit and threads: ``planner.solve`` (rolling horizon, bound from the slots solved
without coupling) and ``planner.solve(..., decompose=False)`` (the whole coupled MILP). Both plans are
checked. Seconds are wall times of this machine; compare within a run.

    python benchmarks/bench_rolling.py                         # default day, 120 s, 2 threads
    python benchmarks/bench_rolling.py --time-limit 300 --scenario path/to/scenario.yaml
"""

from __future__ import annotations

import argparse
import time

import planner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=None, help="scenario file (default: the embedded default)")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--provision-s", type=float, default=155.0)
    ap.add_argument("--load-gb-per-s", type=float, default=2.0)
    ap.add_argument("--objective", default=None)
    a = ap.parse_args()
    sc = planner.load_scenario(a.scenario)
    if sc.options.scaling is None:
        sc = sc.replace_options(scaling={"provision_s": a.provision_s, "load_gb_per_s": a.load_gb_per_s})
    print("| solve | wall s | objective | bound | gap | replicas started | startup GPU-h | checker |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw in (("rolling horizon", {}), ("whole model", {"decompose": False})):
        t0 = time.perf_counter()
        try:
            p = planner.solve(sc, a.objective, time_limit=a.time_limit, threads=a.threads, **kw)
        except planner.PlannerError as e:
            print(f"| {name} | {time.perf_counter() - t0:.1f} | {type(e).__name__} | | | | | |")
            continue
        wall = time.perf_counter() - t0
        ok = planner.check(p, sc).ok
        gap = "-" if p.solver.gap is None else f"{100 * p.solver.gap:.2f} %"
        bound = "-" if p.solver.bound is None else f"{p.solver.bound:.6g}"
        print(f"| {name} | {wall:.1f} | {p.objective.value:.6g} {p.objective.unit} | {bound} | {gap} | "
              f"{p.totals.replicas_started} | {p.totals.scaling_gpu_hours:.4g} | {'ok' if ok else 'FAILS'} |")


if __name__ == "__main__":
    main()
