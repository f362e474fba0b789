"""Trace the carbon/cost trade-off: minimise carbon under a shrinking budget.

    python examples/budget_sweep.py [SCENARIO] [--steps N]

Solves for minimum cost and minimum carbon, then for budgets between the two costs, and prints the
Pareto points (each plan verified by the independent checker). Budgets couple the slots, so these
solves use the Lagrangian decomposition; each plan states its proven gap.
"""

from __future__ import annotations

import argparse

import planner
from planner.errors import InfeasibleError, NoSolutionError


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", nargs="?")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=120.0)
    args = ap.parse_args()
    sc = planner.load_scenario(args.scenario)
    cheapest = planner.solve(sc, objective="cost")
    greenest = planner.solve(sc, objective="carbon")
    lo, hi = cheapest.totals.cost_usd, greenest.totals.cost_usd
    print(f"{'budget USD':>12} {'cost USD':>12} {'carbon kg':>10} {'gap':>7}  status")
    print(f"{'-':>12} {lo:12.2f} {cheapest.totals.carbon_kg:10.3f} {cheapest.solver.gap:7.2%}  min cost")
    for i in range(1, args.steps + 1):
        budget = lo + (hi - lo) * i / (args.steps + 1)
        try:
            p = planner.solve(sc, objective="carbon", budget_usd=budget, time_limit=args.time_limit)
        except (InfeasibleError, NoSolutionError) as e:
            print(f"{budget:12.2f} {'-':>12} {'-':>10} {'-':>7}  {type(e).__name__}")
            continue
        assert planner.check(p, sc).ok
        print(f"{budget:12.2f} {p.totals.cost_usd:12.2f} {p.totals.carbon_kg:10.3f} {p.solver.gap:7.2%}  {p.status}")
    print(f"{'-':>12} {hi:12.2f} {greenest.totals.carbon_kg:10.3f} {greenest.solver.gap:7.2%}  min carbon")


if __name__ == "__main__":
    main()
