"""Compare the carbon-optimal and the cost-optimal plan of a scenario, and verify both.

    python examples/carbon_vs_cost.py [SCENARIO]      # default: the embedded default scenario

Prints each plan's totals, where each region's GPUs go, and what a kilogram of CO2e avoided costs.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import planner


def gpus_by_region(plan) -> dict[str, float]:
    """Mean GPUs in use per region over the horizon."""
    out = defaultdict(float)
    for slot in plan.slots:
        for d in slot.deployments:
            out[d.region] += d.gpus / len(plan.slots)
    return dict(sorted(out.items()))


def main(path: str | None = None) -> None:
    sc = planner.load_scenario(path)
    plans = {obj: planner.solve(sc, objective=obj) for obj in ("carbon", "cost")}
    for obj, plan in plans.items():
        report = planner.check(plan, sc)
        t = plan.totals
        print(f"{obj:>6}-optimal: {t.carbon_kg:10.2f} kgCO2e  {t.energy_kwh:10.1f} kWh  {t.cost_usd:12.2f} USD  "
              f"{t.gpu_hours:8.1f} GPU-h  gap {plan.solver.gap:.2%}  checker: {'holds' if report.ok else 'VIOLATED'}")
        print("         mean GPUs by region:", {r: round(g, 1) for r, g in gpus_by_region(plan).items()})
    c, k = plans["carbon"].totals, plans["cost"].totals
    if k.carbon_kg > c.carbon_kg:
        print(f"carbon-optimal saves {k.carbon_kg - c.carbon_kg:.2f} kgCO2e "
              f"({1 - c.carbon_kg / k.carbon_kg:.0%}) for {c.cost_usd - k.cost_usd:.2f} USD more: "
              f"{(c.cost_usd - k.cost_usd) / (k.carbon_kg - c.carbon_kg):.2f} USD per kg avoided")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
